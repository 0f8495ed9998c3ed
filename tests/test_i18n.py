"""The message catalogues (gettext `.po` files per language): every message in English, German
and Spanish with the same placeholders, the plural forms of each language, valid Telegram
HTML, numbers and times as each language writes them, and every key the code asks for
exists with the parameters it gets."""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

from bot.domain.models import InvoiceStatus, OutboxEvent
from bot.domain.reasons import REASON_KEYS
from bot.domain.staff import INVITABLE
from bot.domain.staff import Role as StaffRole
from bot.i18n import (
    LANGUAGE_NAMES,
    LANGUAGES,
    format_amount,
    format_clock,
    format_datetime,
    format_day,
    format_decimal,
    resolve_language,
    t,
)
from bot.services.reports import PERIODS
from bot.telegram.handlers.menu import COMMANDS, Role, description
from bot.telegram.handlers.merchant import NO_GATEWAY_FOR
from bot.telegram.notice_texts import LATE_PAID_FROM
from bot.telegram.views import CANCEL_NOTES, error_text
from testkit.telegram.format import parse_formatted

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "bot" / "locale"
SOURCES = sorted(p for p in (ROOT / "bot").rglob("*.py"))
# The same words as in English on purpose (names, formats, codes), per language.
SAME_AS_ENGLISH = {
    "de": {
        "cmd_start",
        "help_command_line",
        "invoice_gateway",
        "invoice_status",
        "merchant_from_settings",
        "merchant_line",
        "report_summary",
        "report_summary_line",
        "summary_line",
        "format_datetime",  # ISO dates, as German readers had them before
        "format_time",
        "format_date",
        "link_line",  # a payment link: its description, amount and URL, no words
        "staff_line",  # a name, an id and a role (translated apart)
    },
    "es": {
        "help_command_line",
        "link_line",
        "merchant_from_settings",
        "merchant_line",
        "report_summary",
        "report_summary_line",
        "staff_line",
        "summary_line",
    },
}


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def read(language: str) -> Catalog:
    """The language's catalogue, read from its file (not through the bot's loader)."""
    with (LOCALE / language / "LC_MESSAGES" / "tillbot.po").open("rb") as po:
        return read_po(po, locale=language)


def messages(catalogue: Catalog) -> dict[str, Message]:
    """The catalogue's messages by their key (msgctxt); the header left out."""
    found: dict[str, Message] = {}
    for message in catalogue:
        if message.id:
            assert message.context, f"{message.id!r} has no key (msgctxt)"
            assert message.context not in found, f"{message.context} twice"
            found[message.context] = message
    return found


CATALOGUES = {language: messages(read(language)) for language in LANGUAGES}
EN = CATALOGUES["en"]


def texts(message: Message) -> list[str]:
    """The translations of a message: one, or one per plural form."""
    return list(message.string) if isinstance(message.string, tuple | list) else [message.string]


def source(message: Message) -> list[str]:
    return list(message.id) if isinstance(message.id, tuple | list) else [message.id]


def test_every_language_has_a_catalogue_and_a_name() -> None:
    assert LANGUAGES == ("en", "de", "es")
    assert sorted(p.name for p in LOCALE.iterdir() if p.is_dir()) == sorted(LANGUAGES)
    assert set(LANGUAGE_NAMES) == set(LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_catalogue_has_every_message_with_the_same_source(language: str) -> None:
    catalogue = CATALOGUES[language]
    assert sorted(set(EN) - set(catalogue)) == [], f"missing in {language}"
    assert sorted(set(catalogue) - set(EN)) == [], f"{language} has keys English does not have"
    for key, message in catalogue.items():
        # The English source text is the msgid everywhere: a changed English text shows.
        assert message.id == EN[key].id, f"{language}:{key}: msgid differs from English"
        assert all(text.strip() for text in texts(message)), f"{language}:{key} is empty"
        assert not message.fuzzy, f"{language}:{key} is fuzzy"
    assert len(EN) > 140


def test_the_english_catalogue_is_its_own_source() -> None:
    for key, message in EN.items():
        assert texts(message) == source(message), key


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_language_has_its_plural_forms(language: str) -> None:
    catalogue = read(language)
    rule = get_plural(language)
    assert catalogue.plural_forms == rule.plural_forms
    assert catalogue.num_plurals == (3 if language == "es" else 2)
    plural = {key: m for key, m in CATALOGUES[language].items() if m.pluralizable}
    assert sorted(plural) == [
        "admin_digest",
        "close_line",
        "close_sandbox",
        "err_amount_too_many_decimals",
        "err_description_too_long",
        "err_period_too_long",
        "link_sales",
        "merchant_staff_count",
        "receipt_resent",
        "report_caption",
        "report_ledger_caption",
        "report_sandbox",
        "staff_invite_link",
    ]
    for key, message in plural.items():
        assert len(texts(message)) == rule.num_plurals, f"{language}:{key}"
        assert all("{count}" in text for text in texts(message)), f"{language}:{key}"


@pytest.mark.parametrize(
    ("language", "count", "expected"),
    [
        ("en", 1, "1 invoice, today"),
        ("en", 2, "2 invoices, today"),
        ("en", 0, "0 invoices, today"),
        ("en", 1234, "1,234 invoices, today"),
        ("de", 1, "1 Rechnung, heute"),
        ("de", 3, "3 Rechnungen, heute"),
        ("de", 1234, "1.234 Rechnungen, heute"),
        ("es", 1, "1 factura, hoy"),
        ("es", 2, "2 facturas, hoy"),
        ("es", 1_000_000, "1.000.000 de facturas, hoy"),
        ("fi", 1, "1 invoice, today"),  # a language the bot does not have: English
    ],
)
def test_counts_choose_the_plural_form_of_the_language(
    language: str, count: int, expected: str
) -> None:
    assert t(language, "report_caption", count=count, period=t(language, "period_today")) == (
        expected
    )


def test_a_plural_message_needs_an_integer_count() -> None:
    with pytest.raises(TypeError):
        t("en", "report_caption", count="3", period="x")


@pytest.mark.parametrize("key", sorted(EN))
def test_every_key_has_the_same_placeholders_and_valid_html_in_every_language(key: str) -> None:
    expected = set().union(*(placeholders(text) for text in source(EN[key])))
    assert all(name.isidentifier() for name in expected), f"{key}: odd placeholder {expected}"
    for language, catalogue in CATALOGUES.items():
        for template in texts(catalogue[key]):
            assert placeholders(template) == expected, f"{language}:{key}: {template!r}"
        params: dict[str, object] = {name: "x" for name in expected}
        if EN[key].pluralizable:
            params["count"] = 2
        filled = t(language, key, **params)
        assert filled == filled.strip() and filled, f"{language}:{key}"
        assert "{" not in filled and "}" not in filled, f"{language}:{key}: {filled!r}"
        parse_formatted(filled, "HTML", None)  # raises on broken markup, as Telegram would
        if key not in SAME_AS_ENGLISH.get(language, set()) and language != "en":
            assert texts(catalogue[key]) != texts(EN[key]), f"{language}:{key} not translated"


@pytest.mark.parametrize("language", LANGUAGES)
def test_emoji_are_the_translations_own(language: str) -> None:
    """The words that fill another text carry no emoji to strip: the notices that use them
    have their own (the code used to strip them from the status labels)."""
    for key in ("previous_expired", "previous_cancelled", "previous_failed", "underpaid_detail"):
        text = t(language, key, paid="1", amount="2")
        assert text[0].isalpha(), f"{language}:{key}: {text!r}"
    for key in ("status_expired", "status_cancelled", "status_failed", "status_underpaid"):
        assert not t(language, key, paid="1", amount="2")[0].isalpha()


def test_no_text_is_stripped_of_its_emoji_after_translation() -> None:
    """No `t(...).lstrip(...)`, `.strip(...)`, `.removeprefix(...)`, `.replace(...)`: a
    translation is used as the catalogue has it."""
    found: list[str] = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"lstrip", "rstrip", "strip", "removeprefix", "replace"}
                and isinstance(node.func.value, ast.Call)
                and isinstance(node.func.value.func, ast.Name)
                and node.func.value.func.id == "t"
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


# -- numbers, amounts and times in each language ---------------------------------------------------
@pytest.mark.parametrize(
    ("language", "minor", "currency", "expected"),
    [
        ("en", 123456, "EUR", "€1,234.56"),
        ("de", 123456, "EUR", "1.234,56 €"),
        ("es", 123456, "EUR", "1.234,56 €"),
        ("es", 1250, "USD", "12,50 $"),
        ("es", 100_000_000, "EUR", "1.000.000,00 €"),
        ("en", 1250, "JPY", "¥1,250"),
        ("es", 1250, "JPY", "1.250 ¥"),
        ("en", 12345, "KWD", "KWD 12.345"),
        ("es", 12345, "KWD", "12,345 KWD"),
        ("en", 1250, "CHF", "CHF 12.50"),
        ("de", 1250, "CHF", "12,50 CHF"),
        ("en", 300, "USDT", "USDT 3.00"),
    ],
)
def test_amounts_as_each_language_writes_them(
    language: str, minor: int, currency: str, expected: str
) -> None:
    assert format_amount(minor, currency, language) == expected


def test_numbers_are_exact_decimals_in_each_language() -> None:
    big = Decimal("12345678901234567890.125")  # beyond a float's 17 digits
    assert format_decimal(big, "en", places=3) == "12,345,678,901,234,567,890.125"
    assert format_decimal(big, "es", places=3) == "12.345.678.901.234.567.890,125"
    assert format_decimal(Decimal("0.125"), "de", places=2) == "0,12"  # half to even
    assert format_decimal(Decimal("1000000"), "es", places=0) == "1.000.000"


def test_times_as_each_language_writes_them() -> None:
    moment = datetime(2026, 12, 3, 9, 4, 7, tzinfo=UTC)
    assert format_datetime(moment, "en") == "2026-12-03 09:04 UTC"
    assert format_datetime(moment, "de") == "2026-12-03 09:04 UTC"
    assert format_datetime(moment, "es") == "3/12/2026, 9:04 UTC"
    assert format_clock(moment, "en") == "09:04:07 UTC"
    assert format_clock(moment, "es") == "9:04:07 UTC"
    assert format_day(date(2026, 12, 3), "es") == "3/12/2026"
    assert format_day(date(2026, 12, 3), "de") == "2026-12-03"
    assert format_datetime(None, "es") == format_clock(None, "en") == "—"


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
        "previous_": {f"previous_{s}" for s in LATE_PAID_FROM},
        # a shop's staff: role names, what each invited role may do, the role buttons
        "role_": {f"role_{r.value}" for r in StaffRole},
        "staff_can_": {f"staff_can_{r.value}" for r in INVITABLE},
        "button_make_": {f"button_make_{r.value}" for r in INVITABLE},
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
        for match in re.finditer(r'\brefuse\(\s*\w+\s*,\s*\w+\s*,\s*"(\w+)"', source):
            used.setdefault(match.group(1), []).append(where)  # refusals naming a command
    for note in CANCEL_NOTES.values():
        used.setdefault(note, []).append("bot/telegram/views.py:CANCEL_NOTES")
    for reason in REASON_KEYS:  # views and notices: t(language, reason_key(...))
        used.setdefault(reason, []).append("bot/domain/reasons.py:REASON_KEYS")
    for refusal in NO_GATEWAY_FOR.values():
        used.setdefault(refusal, []).append("bot/telegram/handlers/merchant.py:NO_GATEWAY_FOR")
    return used


def test_every_key_the_code_uses_exists_in_every_language() -> None:
    used = used_keys()
    assert len(used) > 100, "the scan found too few keys: is it still looking at the code?"
    missing = {
        key: where
        for key, where in used.items()
        if any(key not in catalogue for catalogue in CATALOGUES.values())
    }
    assert missing == {}


def test_every_key_of_the_catalogue_is_used() -> None:
    assert sorted(set(EN) - set(used_keys())) == []


def test_the_scan_sees_the_dynamic_keys() -> None:
    used = used_keys()
    for key in ("err_amount_not_a_number", "status_cancelled", "cmd_merchants", "period_week"):
        assert key in used
    for key in ("admin_late_paid", "merchant_underpaid", "receipt", "cancelled_locally"):
        assert key in used
    for key in ("previous_cancelled", "underpaid_detail", "format_datetime", "format_date"):
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
            if given != set().union(*(placeholders(text) for text in source(EN[key.value]))):
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
    assert description(Role.CUSTOMER, "settings", "es") == "Idioma"


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
    assert error_text("es", "not_pending", {"status": "expired"}) == (
        "Esta factura ya no está abierta (⌛ caducada)."
    )
    assert error_text("en", "amount_too_many_decimals", {"count": 1}) == (
        "An amount can have at most 1 decimal."
    )
    assert error_text("es", "amount_too_large", {"maximum": Decimal("1000000")}) == (
        "El importe puede ser como máximo 1.000.000."
    )
    assert error_text("en", "amount_too_large", {"maximum": Decimal("2500.5")}) == (
        "The amount can be at most 2,500.5."
    )
    assert error_text("es", "description_too_long", {"count": 200}) == (
        "La descripción puede tener como máximo 200 caracteres."
    )


@pytest.mark.parametrize(
    ("chosen", "telegram", "expected"),
    [
        (None, "de", "de"),
        (None, "de-AT", "de"),
        (None, "fr", "en"),
        (None, "es", "es"),
        (None, "es-MX", "es"),
        (None, "ES-419", "es"),
        ("es", "de", "es"),
        ("en", "es", "en"),
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
