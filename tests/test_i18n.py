"""The message catalogues: every key in English and German, the same placeholders in both,
valid Telegram HTML, and every key the code asks for exists with the parameters it gets."""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.handlers.lists import PERIODS
from bot.handlers.menu import COMMANDS, Role, description
from bot.handlers.merchant import NO_GATEWAY_FOR
from bot.i18n import CATALOGUES, DE, EN, LANGUAGES, resolve_language, t
from bot.views import CANCEL_NOTES, error_text
from storage.models import InvoiceStatus, OutboxEvent
from testkit.telegram.format import parse_formatted

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    p for p in (ROOT / "bot").rglob("*.py") if p.name != "i18n.py"
)
# The same words in both languages on purpose (names, formats, codes).
SAME_IN_BOTH = {
    "cmd_start",
    "help_command_line",
    "invoice_gateway",
    "invoice_status",
    "merchant_from_settings",
    "merchant_line",
    "report_summary",
    "report_summary_line",
    "summary_line",
}


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def test_english_and_german_have_the_same_keys() -> None:
    assert set(LANGUAGES) == set(CATALOGUES) == {"en", "de"}
    assert sorted(set(EN) - set(DE)) == [], "missing German translations"
    assert sorted(set(DE) - set(EN)) == [], "German keys English does not have"


@pytest.mark.parametrize("key", sorted(EN))
def test_every_key_has_the_same_placeholders_and_valid_html_in_both(key: str) -> None:
    expected = placeholders(EN[key])
    assert all(name.isidentifier() for name in expected), f"{key}: odd placeholder {expected}"
    for language, catalogue in CATALOGUES.items():
        template = catalogue[key]
        assert template.strip(), f"{language}:{key} is empty"
        assert placeholders(template) == expected, f"{language}:{key}"
        filled = t(language, key, **{name: "x" for name in expected})
        assert "{" not in filled and "}" not in filled, f"{language}:{key}: {filled!r}"
        parse_formatted(filled, "HTML", None)  # raises on broken markup, as Telegram would
    if key not in SAME_IN_BOTH:
        assert DE[key] != EN[key], f"{key} is not translated"


# -- what the code asks for -----------------------------------------------------------------------
def calls(tree: ast.AST) -> Iterator[tuple[ast.Call, ast.expr]]:
    """Calls whose key argument names a catalogue entry: t(lang, KEY, ...) and
    reply(update, context, KEY, ...)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        if node.func.id == "t" and len(node.args) >= 2:
            yield node, node.args[1]
        elif node.func.id == "reply" and len(node.args) >= 3:
            yield node, node.args[2]


def expand(key: ast.expr) -> set[str] | None:
    """The keys an f-string key can produce (by what its variable part can be), None when
    the expression is not a literal or an f-string."""
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        return {key.value}
    if not isinstance(key, ast.JoinedStr):
        return None
    prefix = "".join(str(part.value) for part in key.values[:1] if isinstance(part, ast.Constant))
    statuses = {s.value for s in InvoiceStatus}
    input_errors = INPUT_ERROR_CODES | {f"amount_{c}" for c in AMOUNT_ERROR_CODES}
    known: dict[str, set[str]] = {
        "err_": {f"err_{code}" for code in input_errors},
        "status_": {f"status_{s}" for s in statuses},
        "cmd_": {f"cmd_{name}" for names in COMMANDS.values() for name in names},
        "period_": {f"period_{p}" for p in PERIODS},
        # notifier: f"{prefix}_{item.event.value}" for the admin and merchant notices
        "": {f"admin_{e}" for e in NOTICE_EVENTS["admin"]}
        | {f"merchant_{e}" for e in NOTICE_EVENTS["merchant"]},
    }
    assert prefix in known, f"an f-string key {ast.unparse(key)} this test does not enumerate"
    return known[prefix]


def chosen_keys(value: ast.expr) -> set[str]:
    """The keys an assigned value can be: literals and f-strings, through `a if c else b`."""
    if isinstance(value, ast.IfExp):
        return chosen_keys(value.body) | chosen_keys(value.orelse)
    return expand(value) or set()


def raised_codes(pattern: str) -> set[str]:
    found: set[str] = set()
    for path in SOURCES:
        found |= set(re.findall(pattern, path.read_text()))
    return found


INPUT_ERROR_CODES = raised_codes(r'InputError\(\s*"(\w+)"')
AMOUNT_ERROR_CODES = raised_codes(r'AmountError\(\s*"(\w+)"')
NOTICE_EVENTS = {
    "admin": {
        OutboxEvent.PAID.value,
        OutboxEvent.LATE_PAID.value,
        OutboxEvent.UNDERPAID.value,
        OutboxEvent.FAILED.value,
    },
    "merchant": {
        OutboxEvent.LATE_PAID.value,
        OutboxEvent.UNDERPAID.value,
        OutboxEvent.FAILED.value,
        OutboxEvent.COMPLIANCE.value,
    },
}


def used_keys() -> dict[str, list[str]]:
    """Every key the code can ask for, with where."""
    used: dict[str, list[str]] = {}
    for path in SOURCES:
        source = path.read_text()
        tree = ast.parse(source)
        where = path.relative_to(ROOT).as_posix()
        for call, key in calls(tree):
            for name in expand(key) or set():
                used.setdefault(name, []).append(f"{where}:{call.lineno}")
        # Keys chosen into a variable first: `key = "a" if ... else f"b_{x}"`.
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id in ("key", "note")
                for target in node.targets
            ):
                for name in chosen_keys(node.value):
                    used.setdefault(name, []).append(f"{where}:{node.lineno}")
        for match in re.finditer(r'\bt\(\s*\w+\s*,\s*"(\w+)"', source):  # a regex, too
            used.setdefault(match.group(1), []).append(where)
    for note in CANCEL_NOTES.values():
        used.setdefault(note, []).append("bot/views.py:CANCEL_NOTES")
    for refusal in NO_GATEWAY_FOR.values():
        used.setdefault(refusal, []).append("bot/handlers/merchant.py:NO_GATEWAY_FOR")
    return used


def test_every_key_the_code_uses_exists_in_both_languages() -> None:
    used = used_keys()
    assert len(used) > 100, "the scan found too few keys: is it still looking at the code?"
    missing = {key: where for key, where in used.items() if key not in EN or key not in DE}
    assert missing == {}


def test_every_key_of_the_catalogue_is_used() -> None:
    assert sorted(set(EN) - set(used_keys())) == []


def test_the_scan_sees_the_dynamic_keys() -> None:
    used = used_keys()
    for key in ("err_amount_not_a_number", "status_cancelled", "cmd_merchants", "period_week"):
        assert key in used
    for key in ("admin_late_paid", "merchant_underpaid", "receipt", "cancelled_locally"):
        assert key in used


def test_literal_calls_pass_exactly_the_placeholders_of_their_key() -> None:
    """t(lang, "key", a=..., b=...) gives every placeholder of the key and no other."""
    problems: list[str] = []
    for path in SOURCES:
        for call, key in calls(ast.parse(path.read_text())):
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                continue
            if any(k.arg is None for k in call.keywords):  # **params: checked at run time
                continue
            given = {k.arg for k in call.keywords if k.arg is not None}
            if given != placeholders(EN[key.value]):
                where = f"{path.relative_to(ROOT)}:{call.lineno}"
                problems.append(f"{where} {key.value}: {sorted(given)}")
    assert problems == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_command_of_every_menu_is_described(language: str) -> None:
    for role, names in COMMANDS.items():
        for name in names:
            text = description(role, name, language)
            assert 1 <= len(text) <= 256 and text == text.strip()
    assert description(Role.CUSTOMER, "settings", "de") == "Sprache"


def test_input_errors_name_statuses_in_the_language_and_escape_values() -> None:
    assert error_text("de", "not_pending", {"status": "paid"}) == (
        "Diese Rechnung ist nicht mehr offen (✅ BEZAHLT)."
    )
    assert error_text("en", "not_pending", {"status": "cancelled"}, html=False) == (
        "This invoice is no longer open (🚫 cancelled)."
    )
    assert error_text("en", "amount_not_a_number", {"text": "<b>"}) == (
        "“&lt;b&gt;” is not an amount I understand."
    )


@pytest.mark.parametrize(
    ("chosen", "telegram", "expected"),
    [
        (None, "de", "de"),
        (None, "de-AT", "de"),
        (None, "fr", "en"),
        (None, None, "en"),
        ("en", "de", "en"),
        ("de", "en", "de"),
        ("xx", "de", "de"),
    ],
)
def test_the_language_follows_telegram_unless_chosen(
    chosen: str | None, telegram: str | None, expected: str
) -> None:
    assert resolve_language(chosen, telegram) == expected
