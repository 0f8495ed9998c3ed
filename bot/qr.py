"""QR images for the customer to scan: Lightning invoices and on-chain payments."""

from __future__ import annotations

import io

import qrcode
import qrcode.constants


def lightning_uri(ln_invoice: str) -> str:
    """An upper-case `LIGHTNING:` URI: bech32 is case-insensitive, and upper case fits the
    QR alphanumeric mode, which makes a smaller, easier to scan code."""
    return f"LIGHTNING:{ln_invoice.strip().upper()}"


def onchain_uri(address: str, amount: str | None, symbol: str | None) -> str:
    if symbol and symbol.upper() == "BTC" and amount:
        return f"bitcoin:{address}?amount={amount}"
    return address


def qr_png(data: str, *, box_size: int = 8, border: int = 3) -> bytes:
    """Render `data` as a PNG QR code (error correction M: survives a scratched screen)."""
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_size, border=border
    )
    code.add_data(data)
    code.make(fit=True)
    image = code.make_image(fill_color="black", back_color="white")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
