"""Text formatting for the Bot API emulator: parse_mode HTML / MarkdownV2 / Markdown.

Turns the raw text a bot sends into what Telegram shows (plain text) plus the
message entities (offsets and lengths in UTF-16 code units, like Telegram), and
rejects malformed markup the way Telegram does ("can't parse entities: ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EntityParseError",
    "ParsedText",
    "parse_formatted",
    "utf16_len",
]


class EntityParseError(ValueError):
    """Raised for markup Telegram would refuse; the message follows Telegram's wording."""


@dataclass(frozen=True, slots=True)
class ParsedText:
    text: str
    entities: list[dict[str, Any]]


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (Telegram's unit for entity offsets)."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def parse_formatted(
    text: str,
    parse_mode: str | None,
    entities: list[dict[str, Any]] | None = None,
) -> ParsedText:
    """Return the plain text and entities for ``text`` as Telegram would store it.

    Leading and trailing whitespace is stripped like Telegram does.
    """
    mode = (parse_mode or "").strip().lower()
    if entities is not None or not mode:
        parsed = ParsedText(text, [dict(e) for e in entities or []])
    elif mode == "html":
        parsed = _parse_html(text)
    elif mode == "markdownv2":
        parsed = _parse_markdown(text, v2=True)
    elif mode == "markdown":
        parsed = _parse_markdown(text, v2=False)
    else:
        raise EntityParseError(f"unsupported parse_mode {parse_mode!r}")
    return _strip(parsed)


_WS = " \t\r\n\u00a0\u2028\u2029"


def _strip(parsed: ParsedText) -> ParsedText:
    text = parsed.text
    stripped_left = text.lstrip(_WS)
    shift = utf16_len(text) - utf16_len(stripped_left)
    result = stripped_left.rstrip(_WS)
    total = utf16_len(result)
    if shift == 0 and len(result) == len(text):
        return parsed
    entities: list[dict[str, Any]] = []
    for ent in parsed.entities:
        start = max(int(ent.get("offset", 0)) - shift, 0)
        end = min(int(ent.get("offset", 0)) + int(ent.get("length", 0)) - shift, total)
        if end > start:
            new = dict(ent)
            new["offset"] = start
            new["length"] = end - start
            entities.append(new)
    return ParsedText(result, entities)


# ---------------------------------------------------------------------------------- HTML

_HTML_TAGS: dict[str, str] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
    "tg-time": "date_time",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});")
_TAG_NAME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*")
_ATTR_RE = re.compile(
    r"""\s*([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?"""
)
_SPECIAL_RE = re.compile(r"[<&]")


def _html_unescape(value: str) -> str:
    def repl(m: re.Match[str]) -> str:
        body = m.group(1)
        if body.startswith(("#x", "#X")):
            return chr(int(body[2:], 16))
        if body.startswith("#"):
            code = int(body[1:])
            return chr(code) if 0 < code < 0x110000 else m.group(0)
        return _NAMED_ENTITIES.get(body.lower(), m.group(0))

    return _ENTITY_RE.sub(repl, value)


def _parse_attrs(raw: str, src: str, pos: int) -> dict[str, str]:
    attrs: dict[str, str] = {}
    idx = 0
    raw = raw.rstrip().removesuffix("/")
    while idx < len(raw):
        m = _ATTR_RE.match(raw, idx)
        if m is None or m.end() == idx:
            if raw[idx:].strip():
                offset = _byte_offset(src, pos)
                raise EntityParseError(
                    f"can't parse entities: Unclosed start tag at byte offset {offset}"
                )
            break
        value = m.group(2) or ""
        if value[:1] in "\"'" and len(value) >= 2:
            value = value[1:-1]
        attrs[m.group(1).lower()] = _html_unescape(value)
        idx = m.end()
    return attrs


def _parse_html(src: str) -> ParsedText:
    out: list[str] = []
    pos16 = 0  # current length of the output in UTF-16 units
    # stack entries: tag name, start offset, attributes
    stack: list[tuple[str, int, dict[str, str]]] = []
    entities: list[dict[str, Any]] = []
    i = 0
    n = len(src)

    def emit(chunk: str) -> None:
        nonlocal pos16
        if chunk:
            out.append(chunk)
            pos16 += utf16_len(chunk)

    while i < n:
        m = _SPECIAL_RE.search(src, i)
        if m is None:
            emit(src[i:])
            break
        j = m.start()
        emit(src[i:j])
        if src[j] == "&":
            em = _ENTITY_RE.match(src, j)
            if em is not None:
                decoded = _html_unescape(em.group(0))
                if decoded != em.group(0):
                    emit(decoded)
                    i = em.end()
                    continue
            emit("&")
            i = j + 1
            continue
        # a tag
        close = src.find(">", j + 1)
        if close == -1:
            raise EntityParseError(
                f"can't parse entities: Unclosed start tag at byte offset {_byte_offset(src, j)}"
            )
        body = src[j + 1 : close]
        if body.startswith("/"):
            name = body[1:].strip().lower()
            if not stack:
                raise EntityParseError(
                    "can't parse entities: Unexpected end tag at byte offset "
                    f"{_byte_offset(src, j)}"
                )
            open_name, start, attrs = stack.pop()
            if name != open_name:
                raise EntityParseError(
                    f"can't parse entities: Unmatched end tag at byte offset "
                    f'{_byte_offset(src, j)}, expected "</{open_name}>", found "</{name}>"'
                )
            _close_html_entity(open_name, start, pos16, attrs, entities)
            i = close + 1
            continue
        nm = _TAG_NAME_RE.match(body)
        name = nm.group(0).lower() if nm else ""
        if name not in _HTML_TAGS:
            raise EntityParseError(
                f'can\'t parse entities: Unsupported start tag "{name}" '
                f"at byte offset {_byte_offset(src, j)}"
            )
        attrs = _parse_attrs(body[len(name) :], src, j)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise EntityParseError(
                'can\'t parse entities: Tag "span" must have class "tg-spoiler" at byte offset '
                f"{_byte_offset(src, j)}"
            )
        stack.append((name, pos16, attrs))
        i = close + 1

    if stack:
        raise EntityParseError(
            "can't parse entities: Can't find end tag corresponding to start tag "
            f'"{stack[-1][0]}"'
        )
    for ent in entities:
        ent.pop("_language", None)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return ParsedText("".join(out), entities)


def _close_html_entity(
    name: str,
    start: int,
    end: int,
    attrs: dict[str, str],
    entities: list[dict[str, Any]],
) -> None:
    length = end - start
    if length <= 0:
        return
    kind = _HTML_TAGS[name]
    ent: dict[str, Any] = {"type": kind, "offset": start, "length": length}
    if name == "a":
        href = attrs.get("href", "")
        if not href:
            return
        if href.startswith("tg://user?id="):
            ent["type"] = "text_mention"
            ent["user"] = {"id": int(href.split("=", 1)[1] or 0), "is_bot": False, "first_name": ""}
        else:
            ent["url"] = href
    elif name == "blockquote" and "expandable" in attrs:
        ent["type"] = "expandable_blockquote"
    elif name == "tg-emoji":
        ent["custom_emoji_id"] = attrs.get("emoji-id", "")
    elif name == "code":
        lang = attrs.get("class", "")
        if lang.startswith("language-"):
            ent["_language"] = lang.removeprefix("language-")
    elif name == "pre":
        # merge an inner <code class="language-x"> spanning the whole block
        for idx in range(len(entities) - 1, -1, -1):
            inner = entities[idx]
            if inner["type"] == "code" and inner["offset"] == start and inner["length"] == length:
                lang = inner.pop("_language", None)
                del entities[idx]
                if lang:
                    ent["language"] = lang
                break
    elif name == "tg-time" and "unix" in attrs:
        ent["unix_time"] = int(attrs["unix"]) if attrs["unix"].isdigit() else 0
    entities.append(ent)


# ------------------------------------------------------------------------------ Markdown

_MD2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_MD2_TOGGLES = {
    "*": "bold",
    "_": "italic",
    "__": "underline",
    "~": "strikethrough",
    "||": "spoiler",
}
_MD1_TOGGLES = {"*": "bold", "_": "italic"}
_ENTITY_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
}


def _parse_markdown(src: str, *, v2: bool) -> ParsedText:
    out: list[str] = []
    pos16 = 0
    entities: list[dict[str, Any]] = []
    open_: dict[str, tuple[int, int]] = {}  # entity type -> (offset16, src index)
    link_start: tuple[int, int] | None = None
    toggles = _MD2_TOGGLES if v2 else _MD1_TOGGLES
    i = 0
    n = len(src)

    def emit(chunk: str) -> None:
        nonlocal pos16
        out.append(chunk)
        pos16 += utf16_len(chunk)

    def err(msg: str) -> EntityParseError:
        return EntityParseError(f"can't parse entities: {msg}")

    while i < n:
        ch = src[i]
        if ch == "\\" and i + 1 < n and (v2 or src[i + 1] in "_*`["):
            if v2 and not 0 < ord(src[i + 1]) < 127:
                emit("\\")
                i += 1
                continue
            emit(src[i + 1])
            i += 2
            continue
        if src.startswith("```", i):
            end = src.find("```", i + 3)
            if end == -1:
                raise err(f"Can't find end of Pre entity at byte offset {_byte_offset(src, i)}")
            body = src[i + 3 : end]
            lang = ""
            if "\n" in body:
                first, rest = body.split("\n", 1)
                if first and " " not in first:
                    lang, body = first, rest
            if v2:
                body = re.sub(r"\\([`\\])", r"\1", body)
            start = pos16
            emit(body)
            if pos16 > start:
                ent: dict[str, Any] = {"type": "pre", "offset": start, "length": pos16 - start}
                if lang:
                    ent["language"] = lang
                entities.append(ent)
            i = end + 3
            continue
        if ch == "`":
            end = i + 1
            while end < n and src[end] != "`":
                end += 2 if (v2 and src[end] == "\\") else 1
            if end >= n:
                raise err(f"Can't find end of Code entity at byte offset {_byte_offset(src, i)}")
            body = src[i + 1 : end]
            if v2:
                body = re.sub(r"\\([`\\])", r"\1", body)
            start = pos16
            emit(body)
            if pos16 > start:
                entities.append({"type": "code", "offset": start, "length": pos16 - start})
            i = end + 1
            continue
        if ch == "[" and link_start is None:
            link_start = (pos16, i)
            i += 1
            continue
        if ch == "]" and link_start is not None and src.startswith("(", i + 1):
            end = i + 2
            while end < n and src[end] != ")":
                end += 2 if (v2 and src[end] == "\\") else 1
            if end >= n:
                raise err(f"Can't find end of a URL at byte offset {_byte_offset(src, i)}")
            url = src[i + 2 : end]
            if v2:
                url = re.sub(r"\\([)\\])", r"\1", url)
            start16 = link_start[0]
            if pos16 > start16 and url:
                entities.append(
                    {"type": "text_link", "offset": start16, "length": pos16 - start16, "url": url}
                )
            link_start = None
            i = end + 1
            continue
        token = ""
        if v2 and src.startswith("||", i):
            token = "||"  # noqa: S105
        elif v2 and src.startswith("__", i):
            token = "__"  # noqa: S105
        elif ch in toggles:
            token = ch
        if token:
            kind = toggles[token]
            if kind in open_:
                start16, _ = open_.pop(kind)
                if pos16 > start16:
                    entities.append({"type": kind, "offset": start16, "length": pos16 - start16})
            else:
                open_[kind] = (pos16, i)
            i += len(token)
            continue
        if v2 and ch == ">" and (i == 0 or src[i - 1] == "\n"):
            # blockquote line marker: dropped from the text
            i += 1
            continue
        if v2 and ch in _MD2_RESERVED:
            raise err(f"Character '{ch}' is reserved and must be escaped with the preceding '\\'")
        emit(ch)
        i += 1

    if open_:
        kind, (_, idx) = next(iter(open_.items()))
        if v2:
            raise err(
                f"Can't find end of {_ENTITY_NAMES.get(kind, kind)} entity at byte offset "
                f"{_byte_offset(src, idx)}"
            )
        raise err(f"Can't find end of the entity starting at byte offset {_byte_offset(src, idx)}")
    if link_start is not None:
        if v2:
            raise err(
                "Can't find end of TextUrl entity at byte offset "
                f"{_byte_offset(src, link_start[1])}"
            )
        raise err(
            "Can't find end of the entity starting at byte offset "
            f"{_byte_offset(src, link_start[1])}"
        )
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return ParsedText("".join(out), entities)
