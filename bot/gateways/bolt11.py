"""BOLT11-shaped Lightning invoices and bech32 addresses that look real but pay nothing.

For the sandbox gateway (and the gateway simulators of the test kit): a structurally valid
mainnet invoice (bech32 checksum, amount, timestamp, payment hash, description, expiry) with a
random signature, so that wallets and QR readers accept its shape and no one can pay it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: Iterable[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= _GEN[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _bech32_encode(hrp: str, data: list[int]) -> str:
    polymod = _polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def _to_5bit(data: bytes) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append((acc >> bits) & 31)
    if bits:
        out.append((acc << (5 - bits)) & 31)
    return out


def _int_5bit(value: int, width: int | None = None) -> list[int]:
    out: list[int] = []
    while value or not out:
        out.append(value & 31)
        value >>= 5
    out.reverse()
    if width is not None:
        out = [0] * (width - len(out)) + out
    return out


def _tagged(tag: str, data: list[int]) -> list[int]:
    return [_CHARSET.index(tag), *_int_5bit(len(data), 2), *data]


def _bolt11_amount(msat: int) -> str:
    pico = msat * 10  # 1 mSat = 10 pico-BTC
    for unit, size in (("m", 10**9), ("u", 10**6), ("n", 10**3)):
        if pico % size == 0:
            return f"{pico // size}{unit}"
    return f"{pico}p"


def make_bolt11(msat: int, created: datetime, ttl: timedelta, description: str) -> str:
    """A mainnet BOLT11-shaped invoice (valid bech32, random hash and signature)."""
    data = _int_5bit(int(created.timestamp()), 7)
    data += _tagged("p", _to_5bit(secrets.token_bytes(32)))
    data += _tagged("s", _to_5bit(secrets.token_bytes(32)))
    data += _tagged("d", _to_5bit(description.encode()[:300]))
    data += _tagged("x", _int_5bit(max(1, int(ttl.total_seconds()))))
    data += _tagged("c", _int_5bit(18))
    data += _to_5bit(secrets.token_bytes(65))  # signature + recovery id
    return _bech32_encode(f"lnbc{_bolt11_amount(msat)}" if msat > 0 else "lnbc", data)


def make_bech32_address() -> str:
    """A P2WPKH ``bc1q...`` address with a valid bech32 checksum and a random program."""
    return _bech32_encode("bc", [0, *_to_5bit(secrets.token_bytes(20))])
