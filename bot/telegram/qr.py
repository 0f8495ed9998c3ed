"""QR images for the customer to scan: Lightning invoices and on-chain payments."""

from __future__ import annotations

import io
from urllib.parse import quote, urlencode

import qrcode
import qrcode.constants


def lightning_uri(ln_invoice: str) -> str:
    """An upper-case `LIGHTNING:` URI: bech32 is case-insensitive, and upper case fits the
    QR alphanumeric mode, which makes a smaller, easier to scan code."""
    return f"LIGHTNING:{ln_invoice.strip().upper()}"


# URI schemes of payment requests wallets scan, by asset symbol.
_SCHEMES = {"BTC": "bitcoin", "XRP": "ripple"}


def onchain_uri(
    address: str,
    amount: str | None,
    symbol: str | None,
    *,
    memo: str | None = None,
    tag: str | None = None,
) -> str:
    """What the on-chain QR encodes. A memo or destination tag is always carried (a transfer
    without it cannot be credited): Stellar as a SEP-0007 `web+stellar:pay` request, XRP as
    `ripple:<address>?dt=<tag>`, any other asset as `<scheme>:<address>?memo=`/`dt=`."""
    code = (symbol or "").upper()
    if code == "XLM" and memo:
        params = {"destination": address, "memo": memo, "memo_type": "MEMO_TEXT"}
        if amount:
            params["amount"] = amount
        return "web+stellar:pay?" + urlencode(params, quote_via=quote)
    if memo or tag:
        query: dict[str, str] = {}
        if amount:
            query["amount"] = amount
        if tag:
            query["dt"] = tag
        if memo:
            query["memo"] = memo
        scheme = _SCHEMES.get(code, code.lower() or "payment")
        return f"{scheme}:{address}?" + urlencode(query, quote_via=quote)
    if code == "BTC" and amount:
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
