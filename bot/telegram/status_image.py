"""The picture that replaces a counter QR once the invoice is over (issue 16).

Customers at a counter read the picture, not the caption: a paid invoice shows a big check
mark, the amount and the time; a cancelled, expired or failed one shows a cross and says
so. Neither holds a QR any more, so nobody pays a session that is over. A sandbox invoice
says on the picture too that it is a test.
"""

from __future__ import annotations

import asyncio
import io
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from bot.domain.models import Invoice, InvoiceStatus
from bot.domain.money import exponent, to_decimal
from bot.i18n import format_amount, format_datetime, format_number, t

SIZE = 512
_GREEN = (22, 163, 74)
_GREY = (100, 116, 139)
_RED = (220, 38, 38)
_AMBER = (180, 83, 9)
_COLOURS = {
    InvoiceStatus.PAID: _GREEN,
    InvoiceStatus.CANCELLED: _GREY,
    InvoiceStatus.EXPIRED: _GREY,
    InvoiceStatus.FAILED: _RED,
}


async def render_status_image(invoice: Invoice, language: str) -> bytes:
    """`status_image` in a worker thread (drawing takes a few ms of CPU)."""
    return await asyncio.to_thread(status_image, invoice, language)


def status_image(invoice: Invoice, language: str) -> bytes:
    """A PNG saying how the invoice ended: a check mark (paid) or a cross, the status word,
    the amount and, when paid, the time; a sandbox banner on a test invoice."""
    colour = _COLOURS.get(invoice.status, _GREY)
    image = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(image)
    centre_x, centre_y, radius = SIZE // 2, 170, 110
    draw.ellipse(
        (centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius), fill=colour
    )
    if invoice.status is InvoiceStatus.PAID:
        draw.line(
            [(centre_x - 55, centre_y + 2), (centre_x - 15, centre_y + 45), (centre_x + 60, centre_y - 45)],
            fill="white",
            width=26,
            joint="curve",
        )
    else:
        for sign in (1, -1):
            draw.line(
                [(centre_x - 50, centre_y - 50 * sign), (centre_x + 50, centre_y + 50 * sign)],
                fill="white",
                width=26,
            )
    status = _word(invoice.status, language)
    amount = _amount(invoice, language)
    _centred(draw, status, 318, 44, colour)
    _centred(draw, amount, 372, 40, (15, 23, 42))
    if invoice.status is InvoiceStatus.PAID and invoice.paid_at is not None:
        _centred(draw, format_datetime(invoice.paid_at, language), 420, 26, _GREY)
    if invoice.is_sandbox:
        draw.rectangle((0, SIZE - 52, SIZE, SIZE), fill=_AMBER)
        _centred(draw, t(language, "image_sandbox"), SIZE - 26, 26, (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def with_sandbox_band(png: bytes, language: str) -> bytes:
    """A sandbox QR with an amber band below it saying it is a test (the QR untouched)."""
    qr = Image.open(io.BytesIO(png)).convert("RGB")
    band = 52
    image = Image.new("RGB", (qr.width, qr.height + band), "white")
    image.paste(qr, (0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, qr.height, qr.width, qr.height + band), fill=_AMBER)
    text, size = t(language, "image_sandbox"), 24
    while True:
        font = _font(size)
        left, _, right, _ = draw.textbbox((0, 0), text, font=font)
        if right - left <= qr.width - 16 or size <= 10:
            break
        size -= 2
    draw.text((qr.width // 2, qr.height + band // 2), text, font=font, fill="white", anchor="mm")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _word(status: InvoiceStatus, language: str) -> str:
    """The status as the picture says it, in capitals."""
    if status is InvoiceStatus.PAID:
        return t(language, "image_paid")
    if status is InvoiceStatus.CANCELLED:
        return t(language, "image_cancelled")
    if status is InvoiceStatus.FAILED:
        return t(language, "image_failed")
    return t(language, "image_expired")


# A font with the currency signs (DejaVu ships with most Linux systems); without one,
# Pillow's own font, which lacks "€": amounts are then written with the currency's code.
_FONT_FILE = "DejaVuSans-Bold.ttf"


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(_FONT_FILE, size)
    except OSError:
        return ImageFont.load_default(size=size)


def _has_signs() -> bool:
    path = getattr(_font(20), "path", None)
    return isinstance(path, str) and path.endswith(_FONT_FILE)


def _amount(invoice: Invoice, language: str) -> str:
    if _has_signs():
        return format_amount(invoice.amount_minor, invoice.currency, language)
    code = invoice.currency.upper()
    value = to_decimal(invoice.amount_minor, code)
    return format_number(value, language, exponent(code), currency_sign=code)


def _centred(
    draw: ImageDraw.ImageDraw, text: str, y: int, size: int, fill: tuple[int, int, int]
) -> None:
    """One line centred at height `y`, made smaller until it fits the width."""
    while True:
        font = _font(size)
        left, _, right, _ = draw.textbbox((0, 0), text, font=font)
        if right - left <= SIZE - 32 or size <= 12:
            break
        size -= 2
    draw.text((SIZE // 2, y), text, font=font, fill=fill, anchor="mm")
