"""The receipt image: a PNG drawn locally with Pillow, in the reader's language.

Merchant, note, amount, tip (when booked), total, the crypto amount and its rate, the time
in the shop's time zone, the reference, and a QR back to the receipt link
(`https://t.me/<bot>?start=r_<token>`), which shows the receipt again.
"""

from __future__ import annotations

import asyncio
import io
from decimal import Decimal
from functools import lru_cache
from html import escape
from pathlib import Path
from zoneinfo import ZoneInfo

from PIL import Image, ImageDraw, ImageFont
from telegram.constants import ParseMode
from telegram.ext import ExtBot

from bot.domain.links import RECEIPT_PREFIX, Receipt
from bot.domain.models import Invoice
from bot.domain.money import exponent
from bot.i18n import format_amount, format_datetime_in, format_decimal, t
from bot.telegram.qr import qr_png
from bot.telegram.ratelimit import RateLimitArgs
from bot.telegram.views import ViewContext, cut_to_units

WIDTH = 640
MARGIN = 40
INK = (17, 17, 17)
MUTED = (96, 96, 96)
PAPER = (255, 255, 255)
_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/local/share/fonts"),
)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=16)
def font(size: int, bold: bool = False) -> Font:
    """DejaVu Sans where the system has it (every glyph of €, ñ, „“), else Pillow's own."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in _FONT_DIRS:
        path = folder / name
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def receipt_link(bot_username: str, token: str) -> str:
    return f"https://t.me/{bot_username}?start={RECEIPT_PREFIX}{token}"


def wrap(text: str, face: Font, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """`text` broken into lines no wider than `width` (long words cut)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}".strip()
            if draw.textlength(candidate, font=face) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while draw.textlength(word, font=face) > width and len(word) > 1:
                cut = len(word)
                while cut > 1 and draw.textlength(word[:cut], font=face) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def crypto_text(amount: str, language: str) -> str:
    """A crypto amount as the language writes numbers, every digit kept."""
    try:
        value = Decimal(amount)
    except ArithmeticError:
        return amount
    if not value.is_finite():
        return amount
    exp = value.normalize().as_tuple().exponent
    places = -exp if isinstance(exp, int) and exp < 0 else 0
    return format_decimal(value, language, places=places)


def rate_text(rate: Decimal, currency: str, language: str) -> str:
    minor = int(rate.scaleb(exponent(currency)).to_integral_value())
    return format_amount(minor, currency, language)


def receipt_rows(receipt: Receipt, language: str, zone: ZoneInfo) -> list[tuple[str, str]]:
    """The label and value rows of the receipt, in the reader's language."""
    amount = format_amount(receipt.amount_minor, receipt.currency, language)
    rows = [(t(language, "receipt_img_amount"), amount)]
    if receipt.tip_minor:
        rows.append(
            (
                t(language, "receipt_img_tip"),
                format_amount(receipt.tip_minor, receipt.currency, language),
            )
        )
        rows.append(
            (
                t(language, "receipt_img_total"),
                format_amount(receipt.total_minor, receipt.currency, language),
            )
        )
    if receipt.crypto is not None:
        crypto = receipt.crypto
        rows.append(
            (
                t(language, "receipt_img_crypto"),
                f"{crypto_text(crypto.amount, language)} {crypto.symbol}",
            )
        )
        if crypto.rate is not None:
            rows.append(
                (
                    t(language, "receipt_img_rate"),
                    f"1 {crypto.rate_unit} = {rate_text(crypto.rate, receipt.currency, language)}",
                )
            )
    rows.append(
        (t(language, "receipt_img_time"), format_datetime_in(receipt.paid_at, language, zone))
    )
    rows.append((t(language, "receipt_img_reference"), receipt.reference))
    rows.append((t(language, "receipt_img_invoice"), f"#{receipt.invoice_id}"))
    return rows


def draw_receipt(receipt: Receipt, language: str, zone: ZoneInfo, bot_username: str) -> bytes:
    """The receipt as a PNG (about 640 x 1000 pixels)."""
    link = receipt_link(bot_username, receipt.token)
    qr: Image.Image = Image.open(io.BytesIO(qr_png(link, box_size=6))).convert("RGB")
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    inner = WIDTH - 2 * MARGIN
    title_font, name_font, text_font, small = font(34, True), font(26, True), font(22), font(18)
    note_lines = wrap(f"“{receipt.note}”", text_font, inner, scratch) if receipt.note else []
    rows = receipt_rows(receipt, language, zone)
    row_lines = [(label, wrap(value, text_font, inner - 200, scratch)) for label, value in rows]
    height = (
        MARGIN
        + 48
        + 40
        + 32 * len(note_lines)
        + 24
        + sum(32 * len(lines) for _, lines in row_lines)
        + 24
        + qr.height
        + 36
        + MARGIN
    )
    image = Image.new("RGB", (WIDTH, height), PAPER)
    draw = ImageDraw.Draw(image)
    y = MARGIN
    draw.text((MARGIN, y), t(language, "receipt_img_title"), font=title_font, fill=INK)
    y += 48
    draw.text((MARGIN, y), receipt.merchant[:60], font=name_font, fill=INK)
    y += 40
    for line in note_lines:
        draw.text((MARGIN, y), line, font=text_font, fill=MUTED)
        y += 32
    y += 8
    draw.line((MARGIN, y, WIDTH - MARGIN, y), fill=MUTED, width=1)
    y += 16
    for label, lines in row_lines:
        draw.text((MARGIN, y), label, font=text_font, fill=MUTED)
        for line in lines:
            right = WIDTH - MARGIN - draw.textlength(line, font=text_font)
            draw.text((right, y), line, font=text_font, fill=INK)
            y += 32
    y += 8
    draw.line((MARGIN, y, WIDTH - MARGIN, y), fill=MUTED, width=1)
    y += 16
    image.paste(qr, ((WIDTH - qr.width) // 2, y))
    y += qr.height + 6
    hint = t(language, "receipt_img_scan")
    draw.text(((WIDTH - draw.textlength(hint, font=small)) / 2, y), hint, font=small, fill=MUTED)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


async def render_receipt(
    receipt: Receipt, language: str, zone: ZoneInfo, bot_username: str
) -> bytes:
    """`draw_receipt` in a worker thread (tens of milliseconds of CPU)."""
    return await asyncio.to_thread(draw_receipt, receipt, language, zone, bot_username)


def receipt_caption(view: ViewContext, invoice: Invoice, receipt: Receipt, language: str) -> str:
    """The caption under the receipt image (the text receipt, time in the shop's zone)."""
    return t(
        language,
        "receipt",
        amount=format_amount(invoice.amount_minor, invoice.currency, language),
        merchant=escape(receipt.merchant),
        # Within the 1024 of a caption whatever the description's length.
        description=escape(cut_to_units(invoice.description or "—", 300)),
        time=format_datetime_in(invoice.paid_at, language, view.zone),
        gateway=escape(view.title(invoice.gateway)),
        reference=escape(receipt.reference),
        id=invoice.id,
    )


async def send_receipt(
    bot: ExtBot[RateLimitArgs],
    chat_id: int,
    view: ViewContext,
    invoice: Invoice,
    receipt: Receipt,
    language: str,
    rate_limit_args: RateLimitArgs | None = None,
) -> None:
    """The receipt image with its caption, into `chat_id`."""
    png = await render_receipt(receipt, language, view.zone, view.bot_username)
    await bot.send_photo(
        chat_id,
        png,
        caption=receipt_caption(view, invoice, receipt, language),
        parse_mode=ParseMode.HTML,
        rate_limit_args=rate_limit_args,
    )
