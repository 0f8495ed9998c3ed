"""Screenshots of a chat from the emulator's recorded messages, as a Telegram user sees them:
the bot's messages on the left, the user's on the right, photos, bold/italic/code text and
the inline keyboards (Pillow, to PNG). For the README and docs/img/; not a pixel copy of
any Telegram app.

Fonts: DejaVu Sans (and Sans Mono) when installed, else Pillow's built-in font. Emoji that
the font lacks are drawn as a small round badge with a symbol the font has, so that a
screenshot never shows tofu boxes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from testkit.telegram.models import MessageRecord

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

WIDTH = 760
BUBBLE_MAX = 540
PAD = 12
LINE_GAP = 5
SIZE = 17
BACKGROUND = (214, 228, 236)
BOT_BUBBLE = (255, 255, 255)
USER_BUBBLE = (225, 250, 205)
BUTTON = (117, 152, 178)
TEXT = (17, 24, 33)
MUTED = (120, 130, 140)
HEADER = (82, 136, 193)
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
# Emoji the font has no glyph for: drawn as a badge of this colour with this symbol.
BADGES: dict[str, tuple[str, tuple[int, int, int]]] = {
    "🧾": ("≡", (90, 120, 170)),
    "📤": ("↗", (60, 140, 210)),
    "🔳": ("▣", (60, 60, 60)),
    "💳": ("▭", (70, 130, 90)),
    "🎉": ("✶", (230, 150, 30)),
    "🚫": ("⊘", (200, 60, 60)),
    "🧪": ("⚗", (130, 90, 180)),
    "💰": ("$", (70, 150, 70)),
    "🗑": ("✕", (150, 150, 150)),
    "👋": ("☺", (230, 180, 60)),
    "👥": ("☺", (90, 120, 170)),
    "🛂": ("!", (200, 120, 40)),
    "⏳": ("…", (150, 150, 150)),
    "✅": ("✓", (60, 170, 80)),
    "❌": ("✕", (200, 60, 60)),
}


@cache
def font(style: str = "regular", size: int = SIZE) -> Font:
    names = {
        "regular": "DejaVuSans.ttf",
        "bold": "DejaVuSans-Bold.ttf",
        "italic": "DejaVuSans-Oblique.ttf",
        "code": "DejaVuSansMono.ttf",
    }
    for folder in FONT_DIRS:
        path = folder / names[style]
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def _mask(char: str, style: str) -> tuple[tuple[int, int], bytes]:
    mask = font(style).getmask(char)
    return mask.size, bytes(mask)


@cache
def _missing_mask(style: str) -> tuple[tuple[int, int], bytes]:
    return _mask("\U000f0000", style)


@cache
def has_glyph(char: str, style: str = "regular") -> bool:
    if char in "\ufe0f\u200d":
        return True  # variation selector, joiner: drawn as nothing
    return _mask(char, style) != _missing_mask(style)


@dataclass
class Run:
    text: str
    style: str  # regular, bold, italic, code


def runs_of(text: str, entities: Sequence[dict[str, Any]]) -> list[Run]:
    """Split the plain text into styled runs by its entities (offsets in UTF-16 units)."""
    units: list[int] = []  # the UTF-16 offset of each character
    offset = 0
    for char in text:
        units.append(offset)
        offset += 2 if ord(char) > 0xFFFF else 1
    styles = ["regular"] * len(text)
    names = {"bold": "bold", "italic": "italic", "code": "code", "pre": "code"}
    for entity in entities:
        style = names.get(str(entity.get("type")))
        if style is None:
            continue
        start, end = int(entity["offset"]), int(entity["offset"]) + int(entity["length"])
        for index, unit in enumerate(units):
            if start <= unit < end:
                styles[index] = style
    found: list[Run] = []
    for char, style in zip(text, styles, strict=True):
        if found and found[-1].style == style:
            found[-1].text += char
        else:
            found.append(Run(char, style))
    return found


def _width(text: str, style: str) -> int:
    total = 0
    for char in text:
        if char in BADGES and not has_glyph(char, style):
            total += SIZE + 4
        elif has_glyph(char, style):
            total += int(font(style).getlength(char))
    return total


def _lines(runs: list[Run], width: int) -> list[list[Run]]:
    """Word-wrap styled runs into lines no wider than `width` (newlines kept)."""
    lines: list[list[Run]] = [[]]
    used = 0
    for run in runs:
        for part_index, part in enumerate(run.text.split("\n")):
            if part_index:
                lines.append([])
                used = 0
            for word in _words(part):
                size = _width(word, run.style)
                if used + size > width and used > 0 and word.strip():
                    lines.append([])
                    used = 0
                    word = word.lstrip(" ")
                    size = _width(word, run.style)
                line = lines[-1]
                if line and line[-1].style == run.style:
                    line[-1].text += word
                else:
                    line.append(Run(word, run.style))
                used += size
    return lines


def _words(text: str) -> list[str]:
    words: list[str] = []
    for piece in text.split(" "):
        words.append((" " if words else "") + piece)
    return words


def _draw_runs(draw: ImageDraw.ImageDraw, x: int, y: int, line: list[Run], colour: Any) -> None:
    for run in line:
        for char in run.text:
            if char in BADGES and not has_glyph(char, run.style):
                symbol, badge = BADGES[char]
                draw.ellipse((x + 1, y + 2, x + SIZE + 1, y + SIZE + 2), fill=badge)
                small = font("bold", SIZE - 5)
                draw.text(
                    (x + 1 + SIZE / 2, y + 2 + SIZE / 2), symbol, font=small, fill="white",
                    anchor="mm",
                )
                x += SIZE + 4
            elif has_glyph(char, run.style):
                draw.text((x, y), char, font=font(run.style), fill=colour)
                x += int(font(run.style).getlength(char))


def _line_height() -> int:
    return SIZE + LINE_GAP + 2


def render_message(message: MessageRecord) -> Image.Image:
    """One message: the bubble (photo, text) and its inline keyboard, on the chat's colour."""
    text = message.content
    entities = message.entities if message.text is not None else message.caption_entities
    lines = _lines(runs_of(text, entities), BUBBLE_MAX - 2 * PAD) if text else []
    photo: Image.Image | None = None
    if message.photo is not None:
        photo = Image.open(io.BytesIO(message.photo)).convert("RGB")
        scale = min(1.0, (BUBBLE_MAX - 2 * PAD) / photo.width, 320 / photo.height)
        photo = photo.resize((int(photo.width * scale), int(photo.height * scale)))
    text_width = max((sum(_width(r.text, r.style) for r in line) for line in lines), default=0)
    inner = max(text_width, photo.width if photo else 0, 120)
    bubble_w = min(BUBBLE_MAX, inner + 2 * PAD)
    bubble_h = PAD + (photo.height + PAD if photo else 0) + len(lines) * _line_height() + PAD
    rows = (message.reply_markup or {}).get("inline_keyboard") or []
    keyboard_h = len(rows) * 42
    image = Image.new("RGB", (WIDTH, bubble_h + keyboard_h + 12), BACKGROUND)
    draw = ImageDraw.Draw(image)
    left = PAD if message.from_bot else WIDTH - PAD - bubble_w
    colour = BOT_BUBBLE if message.from_bot else USER_BUBBLE
    draw.rounded_rectangle((left, 0, left + bubble_w, bubble_h), radius=14, fill=colour)
    y = PAD
    if photo is not None:
        image.paste(photo, (left + PAD, y))
        y += photo.height + PAD
    for line in lines:
        _draw_runs(draw, left + PAD, y, line, TEXT)
        y += _line_height()
    if message.edits:
        draw.text(
            (left + bubble_w - PAD, bubble_h - 6), "edited", font=font("italic", 12),
            fill=MUTED, anchor="rb",
        )
    y = bubble_h + 4
    for row in rows:
        cell = (bubble_w - 4 * (len(row) - 1)) / max(1, len(row))
        for index, button in enumerate(row):
            x0 = left + index * (cell + 4)
            draw.rounded_rectangle((x0, y, x0 + cell, y + 36), radius=8, fill=BUTTON)
            label = str(button.get("text", ""))
            label_w = _width(label, "bold")
            _draw_runs(draw, int(x0 + (cell - label_w) / 2), y + 8, [Run(label, "bold")], "white")
            if "url" in button:
                draw.text((x0 + cell - 6, y + 4), "↗", font=font("regular", 11), fill="white",
                          anchor="ra")
        y += 42
    return image


def render_chat(messages: Sequence[MessageRecord], title: str, path: Path) -> Path:
    """The messages one under another below a header with the chat's title, as a PNG."""
    parts = [render_message(m) for m in messages if not m.deleted]
    header = 48
    height = header + sum(p.height for p in parts) + 12
    image = Image.new("RGB", (WIDTH, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH, header), fill=HEADER)
    draw.text((PAD + 4, header / 2), title, font=font("bold", 19), fill="white", anchor="lm")
    y = header + 10
    for part in parts:
        image.paste(part, (0, y))
        y += part.height
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PNG")
    return path
