"""Bot API description (``telegram_api.json``) and request validation for the emulator.

``ApiSpec`` knows every method and type of the Bot API. It turns raw request
parameters (form fields where non-strings are JSON-encoded, multipart parts, or
a JSON body) into typed values and checks them against the method's fields and,
recursively but cheaply, against the object types they contain.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "ApiSpec",
    "FieldSpec",
    "MethodSpec",
    "TypeSpec",
    "UploadedFile",
    "load_spec",
]

SPEC_PATH = Path(__file__).with_name("telegram_api.json")

_PRIMITIVES = frozenset({"Integer", "Float", "Boolean", "String", "InputFile", "True"})
# nested objects are checked down to this depth (method parameter == depth 0)
_MAX_DEPTH = 5
_DISCRIMINATOR_RE = re.compile(r'(?:must be|always)\s+"?([a-z_]+)"?')


@dataclass(slots=True)
class UploadedFile:
    """A file part of a multipart request."""

    field_name: str
    filename: str
    content_type: str
    data: bytes

    def __repr__(self) -> str:
        return f"UploadedFile({self.field_name!r}, {self.filename!r}, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    types: tuple[str, ...]
    required: bool


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    fields: dict[str, FieldSpec]
    returns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TypeSpec:
    name: str
    fields: dict[str, FieldSpec]
    subtypes: tuple[str, ...] = ()
    # value of the "type"/"status"/"source" field that selects this subtype
    discriminator: tuple[str, str] | None = None


@dataclass(slots=True)
class ApiSpec:
    version: str
    methods: dict[str, MethodSpec]
    types: dict[str, TypeSpec]
    _lower: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lower = {name.lower(): name for name in self.methods}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApiSpec:
        methods: dict[str, MethodSpec] = {}
        for name, raw in data.get("methods", {}).items():
            methods[name] = MethodSpec(
                name=name,
                fields=_fields(raw.get("fields", [])),
                returns=tuple(raw.get("returns", [])),
            )
        types: dict[str, TypeSpec] = {}
        for name, raw in data.get("types", {}).items():
            raw_fields = raw.get("fields", [])
            disc: tuple[str, str] | None = None
            if raw_fields and raw.get("subtype_of"):
                first = raw_fields[0]
                if first["name"] in ("type", "status", "source"):
                    m = _DISCRIMINATOR_RE.search(str(first.get("description", "")))
                    if m:
                        disc = (first["name"], m.group(1))
            types[name] = TypeSpec(
                name=name,
                fields=_fields(raw_fields),
                subtypes=tuple(raw.get("subtypes", [])),
                discriminator=disc,
            )
        return cls(version=str(data.get("version", "")), methods=methods, types=types)

    def canonical_method(self, name: str) -> str | None:
        """Bot API method names are case-insensitive."""
        return self._lower.get(name.lower())

    # ------------------------------------------------------------------ coercion

    def coerce(
        self,
        method: str,
        raw: dict[str, Any],
        *,
        from_form: bool,
    ) -> tuple[dict[str, Any], list[str]]:
        """Decode form/JSON parameters to typed values according to the field types.

        Returns the decoded parameters and a list of problems (unknown parameters,
        undecodable values). Unknown parameters are kept undecoded.
        """
        spec = self.methods[method]
        params: dict[str, Any] = {}
        problems: list[str] = []
        for name, value in raw.items():
            fspec = spec.fields.get(name)
            if fspec is None:
                problems.append(f"{method}: unknown parameter {name!r}")
                params[name] = value
                continue
            try:
                params[name] = _coerce_value(value, fspec.types, from_form=from_form)
            except ValueError as exc:
                problems.append(f"{method}: parameter {name!r}: {exc}")
                params[name] = value
        return params, problems

    # ---------------------------------------------------------------- validation

    def validate(self, method: str, params: dict[str, Any]) -> list[str]:
        """Missing required fields and type errors of ``params`` (already coerced)."""
        spec = self.methods[method]
        problems: list[str] = []
        for fspec in spec.fields.values():
            if fspec.required and params.get(fspec.name) is None:
                problems.append(f"{method}: missing required parameter {fspec.name!r}")
        for name, value in params.items():
            found = spec.fields.get(name)
            if found is None or value is None:
                continue
            problems.extend(self.check_value(value, found.types, f"{method}.{name}", 0))
        return problems

    def check_value(self, value: Any, types: tuple[str, ...], path: str, depth: int) -> list[str]:
        """Errors of ``value`` against any of ``types`` (empty list when one matches)."""
        best: list[str] | None = None
        for tname in types:
            errors = self._check_one(value, tname, path, depth)
            if not errors:
                return []
            if best is None or len(errors) < len(best):
                best = errors
        return best or []

    def _check_one(self, value: Any, tname: str, path: str, depth: int) -> list[str]:
        if tname.startswith("Array of "):
            if not isinstance(value, list):
                return [f"{path}: expected {tname}, got {_kind(value)}"]
            inner = tname.removeprefix("Array of ")
            errors: list[str] = []
            for idx, item in enumerate(value):
                errors.extend(self._check_one(item, inner, f"{path}[{idx}]", depth + 1))
                if len(errors) > 20:
                    break
            return errors
        if tname in _PRIMITIVES:
            return _check_primitive(value, tname, path)
        tspec = self.types.get(tname)
        if tspec is None:
            return []
        if not isinstance(value, dict):
            return [f"{path}: expected {tname} object, got {_kind(value)}"]
        if depth > _MAX_DEPTH:
            return []
        if tspec.subtypes and not tspec.fields:
            return self._check_union(value, tspec, path, depth)
        return self.check_object(value, tspec, path, depth)

    def _check_union(
        self, value: dict[str, Any], tspec: TypeSpec, path: str, depth: int
    ) -> list[str]:
        candidates = [self.types[s] for s in tspec.subtypes if s in self.types]
        matching = [
            c
            for c in candidates
            if c.discriminator is not None and value.get(c.discriminator[0]) == c.discriminator[1]
        ]
        if not matching:
            keys = {c.discriminator[0] for c in candidates if c.discriminator is not None}
            if keys:
                key = sorted(keys)[0]
                return [f"{path}: unknown {tspec.name} {key} {value.get(key)!r}"]
            matching = candidates
        best: list[str] | None = None
        for cand in matching:
            errors = self.check_object(value, cand, path, depth)
            if not errors:
                return []
            if best is None or len(errors) < len(best):
                best = errors
        return best or []

    def check_object(
        self, value: dict[str, Any], tspec: TypeSpec, path: str, depth: int
    ) -> list[str]:
        errors: list[str] = []
        for key in value:
            if key not in tspec.fields:
                errors.append(f"{path}: unknown field {key!r} for {tspec.name}")
        for fspec in tspec.fields.values():
            sub = value.get(fspec.name)
            if sub is None:
                if fspec.required:
                    errors.append(f"{path}: missing required field {fspec.name!r} of {tspec.name}")
                continue
            errors.extend(self.check_value(sub, fspec.types, f"{path}.{fspec.name}", depth + 1))
        if tspec.discriminator is not None:
            key, expected = tspec.discriminator
            if key in value and value[key] != expected:
                errors.append(f"{path}: {key} must be {expected!r} for {tspec.name}")
        return errors


def _fields(raw_fields: list[dict[str, Any]]) -> dict[str, FieldSpec]:
    return {
        f["name"]: FieldSpec(
            name=f["name"], types=tuple(f.get("types", [])), required=bool(f.get("required"))
        )
        for f in raw_fields
    }


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, UploadedFile):
        return "InputFile"
    return "Object"


def _check_primitive(value: Any, tname: str, path: str) -> list[str]:
    ok: bool
    if tname == "Integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tname == "Float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif tname in ("Boolean", "True"):
        ok = isinstance(value, bool)
    elif tname == "InputFile":
        ok = isinstance(value, UploadedFile)
    else:
        ok = isinstance(value, str)
    return [] if ok else [f"{path}: expected {tname}, got {_kind(value)}"]


def _coerce_value(value: Any, types: tuple[str, ...], *, from_form: bool) -> Any:
    if isinstance(value, UploadedFile):
        if "InputFile" not in types:
            raise ValueError("a file was uploaded for a parameter that does not accept files")
        return value
    if not from_form or not isinstance(value, str):
        if isinstance(value, int | float) and not isinstance(value, bool) and types == ("String",):
            return str(value)
        return value
    # form values: strings as-is, everything else JSON-encoded
    if "Integer" in types:
        try:
            return int(value.strip())
        except ValueError:
            if "String" in types:
                return value
            raise ValueError(f"expected an Integer, got {value[:40]!r}") from None
    if "String" in types:
        return value
    if types and types[0] in ("Boolean", "True"):
        low = value.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise ValueError(f"expected a Boolean, got {value[:40]!r}")
    if types and types[0] == "Float":
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"expected a Float, got {value[:40]!r}") from None
    if "InputFile" in types:
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise ValueError(f"can't parse JSON object: {value[:60]!r}") from None


@cache
def load_spec(path: str | None = None) -> ApiSpec:
    """Load (once) the Bot API description shipped next to this module."""
    with open(path or SPEC_PATH, encoding="utf-8") as fh:
        return ApiSpec.from_json(json.load(fh))
