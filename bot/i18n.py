"""Message catalogues and the language's ways of writing numbers and times.

Every text the bot sends is in a gettext catalogue per language,
`bot/locale/<language>/LC_MESSAGES/tillbot.po` (English, German, Spanish): `msgctxt` is the
key the code asks for, `msgid` the English source text, `msgstr` the language's text. They
are compiled when this module is imported (Babel reads the `.po`, writes the `.mo` into
memory, `gettext` serves it), so a clean clone needs no build step and a broken catalogue
stops the bot at its start, not at its first message.

Texts are HTML (parse_mode HTML); placeholders are `{name}`, filled with values that the
views escape. A message with a plural form chooses it by its `count` parameter, with the
language's own Plural-Forms (Spanish has three), and shows `count` as the language writes
numbers. `t(language, key, **params)` falls back to English for a language it does not have.

Numbers, amounts and times are written through Babel (CLDR data) in the language's locale;
a time's pattern is itself a message of the catalogue (`format_datetime`, ...), so each
language chooses how its dates read.
"""

from __future__ import annotations

import copy
import gettext
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime as babel_format_datetime
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import NumberPattern

from bot.domain.money import CURRENCY_SIGNS, exponent, to_decimal

LANGUAGES = ("en", "de", "es")
DEFAULT_LANGUAGE = "en"
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch", "es": "Español"}
DOMAIN = "tillbot"
LOCALE_DIR = Path(__file__).resolve().with_name("locale")
# Babel writes the spaces inside numbers and before currency signs as no-break spaces; the
# bot's texts keep plain ones, as people type them (and search or copy them).
_SPACES = str.maketrans({"\u00a0": " ", "\u202f": " "})


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """A message of the English catalogue: the key, its text and its plural text."""

    key: str
    singular: str
    plural: str | None = None


def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalogue(language: str) -> Catalog:
    """The language's `.po` file as Babel reads it."""
    with catalogue_path(language).open("rb") as po:
        return read_po(po, locale=language, domain=DOMAIN)


def compile_catalogue(catalogue: Catalog) -> gettext.GNUTranslations:
    """The catalogue compiled to `.mo` in memory and loaded by `gettext`."""
    mo = io.BytesIO()
    write_mo(mo, catalogue)
    mo.seek(0)
    return gettext.GNUTranslations(mo)


def _source_messages(catalogue: Catalog) -> dict[str, SourceMessage]:
    messages: dict[str, SourceMessage] = {}
    for message in catalogue:
        if not message.id or message.context is None:
            continue  # the header
        if isinstance(message.id, tuple | list):
            singular, plural = str(message.id[0]), str(message.id[1])
            messages[message.context] = SourceMessage(message.context, singular, plural)
        else:
            messages[message.context] = SourceMessage(message.context, str(message.id))
    return messages


SOURCE: dict[str, SourceMessage] = _source_messages(read_catalogue(DEFAULT_LANGUAGE))
_TRANSLATIONS: dict[str, gettext.GNUTranslations] = {
    language: compile_catalogue(read_catalogue(language)) for language in LANGUAGES
}


def resolve_language(preferred: str | None, telegram_code: str | None) -> str:
    """The user's chosen language, else their Telegram language, else English."""
    for code in (preferred, telegram_code):
        if code:
            short = code.split("-")[0].lower()
            if short in LANGUAGES:
                return short
    return DEFAULT_LANGUAGE


def t(language: str, key: str, /, **params: object) -> str:
    """The text of `key` in the language, its placeholders filled."""
    source = SOURCE[key]
    translations = _TRANSLATIONS.get(language) or _TRANSLATIONS[DEFAULT_LANGUAGE]
    if source.plural is None:
        template = translations.pgettext(key, source.singular)
    else:
        count = params["count"]
        if not isinstance(count, int) or isinstance(count, bool):
            raise TypeError(f"{key}: count must be an int, not {count!r}")
        template = translations.npgettext(key, source.singular, source.plural, count)
        params["count"] = format_number(count, language)
    return template.format(**params) if params else template


# -- numbers and times ---------------------------------------------------------------------------
@lru_cache(maxsize=64)
def locale_of(language: str) -> Locale:
    """Babel's locale of the language (English for one Babel does not know)."""
    try:
        return Locale.parse(language)
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse(DEFAULT_LANGUAGE)


@lru_cache(maxsize=256)
def _decimal_pattern(language: str, places: int, currency_sign: str | None) -> NumberPattern:
    """The locale's number (or currency) pattern with exactly `places` decimals; a currency
    pattern has `currency_sign` written in, spaced from the digits when it is letters
    (CLDR's currency spacing: 'CHF 12.50', '€12.50')."""
    locale = locale_of(language)
    formats = locale.currency_formats if currency_sign else locale.decimal_formats
    base = formats["standard"] if currency_sign else formats[None]
    pattern: NumberPattern = copy.copy(base)
    pattern.frac_prec = (places, places)
    if currency_sign:
        ahead = currency_sign + (" " if currency_sign[-1].isalpha() else "")
        behind = (" " if currency_sign[0].isalpha() else "") + currency_sign
        pattern.prefix = tuple(
            p[:-1] + ahead if p.endswith("¤") else p.replace("¤", currency_sign)
            for p in base.prefix
        )
        pattern.suffix = tuple(
            behind + s[1:] if s.startswith("¤") else s.replace("¤", currency_sign)
            for s in base.suffix
        )
    return pattern


def format_number(
    value: Decimal | int, language: str, places: int = 0, currency_sign: str | None = None
) -> str:
    """`value` rounded to `places` decimals (exactly, in Decimal) and written as the language
    writes numbers: '1,234.50' (en), '1.234,50' (de, es); with `currency_sign` placed as the
    language places it: '€1,234.50', '1.234,50 €'."""
    quantized = Decimal(value).quantize(Decimal(1).scaleb(-places))
    pattern = _decimal_pattern(language, places, currency_sign)
    text: str = pattern.apply(quantized, locale_of(language))
    return text.translate(_SPACES)


def format_decimal(value: Decimal, language: str, places: int = 2) -> str:
    """Group thousands and choose the separators of the language ('1,234.50' / '1.234,50'),
    through Babel's locale data; exact (Decimal, rounded to `places`)."""
    return format_number(value, language, places)


def format_amount(minor: int, currency: str, language: str = "en") -> str:
    """An amount as people of the language write it (Babel's locale data): '€12.50' (en),
    '12,50 €' (de, es); currencies without a sign here by their code ('CHF 12.50')."""
    code = currency.upper()
    sign = CURRENCY_SIGNS.get(code, code)
    return format_number(to_decimal(minor, code), language, exponent(code), currency_sign=sign)


def format_datetime(value: datetime | None, language: str) -> str:
    """A date and time in UTC, as the language's catalogue writes it ('—' when unknown)."""
    if value is None:
        return "—"
    return _format(value, t(language, "format_datetime"), language)


def format_datetime_in(value: datetime | None, language: str, zone: ZoneInfo) -> str:
    """A date and time in the shop's time zone, named after it ('Europe/Berlin'), as the
    language's catalogue writes a date and time ('—' when unknown)."""
    if value is None:
        return "—"
    moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    utc_pattern = t(language, "format_datetime")
    pattern = utc_pattern.replace("'UTC'", f"'{zone.key}'")  # a date pattern, not a text
    text = babel_format_datetime(moment, pattern, tzinfo=zone, locale=locale_of(language))
    return text.translate(_SPACES)


def format_clock(value: datetime | None, language: str) -> str:
    """A time of day in UTC, as the language's catalogue writes it ('—' when unknown)."""
    if value is None:
        return "—"
    return _format(value, t(language, "format_time"), language)


def format_day(value: date, language: str) -> str:
    """A day, as the language's catalogue writes it."""
    midnight = datetime(value.year, value.month, value.day, tzinfo=UTC)
    return _format(midnight, t(language, "format_date"), language)


def _format(value: datetime, pattern: str, language: str) -> str:
    moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    text = babel_format_datetime(moment, pattern, tzinfo=UTC, locale=locale_of(language))
    return text.translate(_SPACES)
