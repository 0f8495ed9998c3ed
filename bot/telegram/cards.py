"""The printable counter card of a payment link: shop name, amount, what it is for, and the
link's QR, as a PNG and as a one-page PDF (Pillow writes both, nothing else needed)."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from PIL import Image, ImageDraw

from bot.domain.links import LINK_PREFIX, PaymentLink
from bot.i18n import format_amount, t
from bot.telegram.qr import qr_png
from bot.telegram.receipts import INK, MUTED, PAPER, font, wrap

# A6 portrait at 150 dpi: 105 x 148 mm.
CARD_WIDTH, CARD_HEIGHT, CARD_DPI = 620, 874, 150


def link_url(bot_username: str, token: str) -> str:
    return f"https://t.me/{bot_username}?start={LINK_PREFIX}{token}"


@dataclass(frozen=True, slots=True)
class CounterCard:
    png: bytes
    pdf: bytes


def draw_card(link: PaymentLink, shop: str, language: str, bot_username: str) -> Image.Image:
    image = Image.new("RGB", (CARD_WIDTH, CARD_HEIGHT), PAPER)
    draw = ImageDraw.Draw(image)
    margin = 36
    inner = CARD_WIDTH - 2 * margin

    def centered(
        text: str, y: int, size: int, bold: bool = False, fill: tuple[int, int, int] = INK
    ) -> int:
        face = font(size, bold)
        for line in wrap(text, face, inner, draw)[:2]:
            draw.text(
                ((CARD_WIDTH - draw.textlength(line, font=face)) / 2, y), line, font=face, fill=fill
            )
            y += int(size * 1.3)
        return y

    y = centered(shop[:60], margin, 34, bold=True)
    if link.amount_minor is None:
        amount = t(language, "card_any_amount")
    else:
        amount = format_amount(link.amount_minor, link.currency, language)
    y = centered(amount, y + 8, 44, bold=True)
    y = centered(link.description, y + 4, 24, fill=MUTED)
    url = link_url(bot_username, link.token)
    # One pixel a module, then scaled by a whole factor to fill the room: sharp edges.
    qr: Image.Image = Image.open(io.BytesIO(qr_png(url, box_size=1, border=2))).convert("RGB")
    room = min(CARD_HEIGHT - y - 100, inner)
    factor = max(1, room // qr.width)
    qr = qr.resize((qr.width * factor, qr.height * factor), Image.Resampling.NEAREST)
    top = y + (CARD_HEIGHT - 90 - y - qr.height) // 2
    image.paste(qr, ((CARD_WIDTH - qr.width) // 2, top))
    centered(t(language, "card_scan"), CARD_HEIGHT - 64, 22, fill=MUTED)
    return image


def make_card(link: PaymentLink, shop: str, language: str, bot_username: str) -> CounterCard:
    image = draw_card(link, shop, language, bot_username)
    png, pdf = io.BytesIO(), io.BytesIO()
    image.save(png, format="PNG", optimize=True)
    image.save(pdf, format="PDF", resolution=CARD_DPI, title=f"{shop} – {link.description}")
    return CounterCard(png=png.getvalue(), pdf=pdf.getvalue())


async def render_card(
    link: PaymentLink, shop: str, language: str, bot_username: str
) -> CounterCard:
    """`make_card` in a worker thread."""
    return await asyncio.to_thread(make_card, link, shop, language, bot_username)
