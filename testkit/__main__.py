"""Run one simulator standalone, for a bot (or a benchmark) in another process.

    python -m testkit mion --port 8101 --api-key K
    python -m testkit mixpay --port 8102 [--payee-id ID] [--rate-limit 60]
    python -m testkit miraclepay --port 8103 --client-id C --api-key K
    python -m testkit telegram --port 8081 --token 123:ABC   (the Bot API emulator)

Prints one line ``<name> simulator listening on <url>`` (the URL an adapter is configured
with: MION_API_URL, MIXPAY_API_URL, MIRACLEPAY_API_URL) and serves until SIGTERM or SIGINT.
The controls are under ``{root}/_sim/...`` (see `testkit.gateway_base`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import timedelta
from typing import Any

from testkit.gateway_base import GatewaySimulator
from testkit.signals import until_stop_signal

GATEWAYS = ("mion", "mixpay", "miraclepay")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m testkit",
        description="Run a payment gateway simulator (or the Telegram emulator) standalone.",
    )
    sub = parser.add_subparsers(dest="gateway", required=True, metavar="SIMULATOR")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
        p.add_argument("--log-level", default="WARNING")
        p.add_argument(
            "--callback-retry-delays",
            default=None,
            help="comma-separated seconds before each callback try (default: the gateway's)",
        )

    mion = sub.add_parser("mion", help="Mion (online checkout and point-of-sale Lightning)")
    common(mion)
    mion.add_argument("--api-key", default="mion-sim-key")
    mion.add_argument(
        "--currencies", default="EUR", help="comma-separated ISO codes, or 'any' (sandbox-like)"
    )
    mion.add_argument(
        "--checkout-base",
        default="https://app.mion.group/checkout/",
        help="checkout URL prefix; 'local' serves the simulator's own checkout page",
    )
    mion.add_argument(
        "--funded-after",
        type=float,
        default=0.3,
        help="seconds from funding-received to funded; negative: never",
    )
    mion.add_argument("--attempt-ttl", type=float, default=120.0, help="Lightning attempt life")

    mixpay = sub.add_parser("mixpay", help="MixPay (one-time payments and on-chain payments)")
    common(mixpay)
    mixpay.add_argument("--payee-id", default=None, help="default: the simulator's payee")
    mixpay.add_argument(
        "--rate-limit", type=int, default=60, help="requests per minute; 0 disables the limit"
    )
    mixpay.add_argument(
        "--checkout-base", default=None, help="default: https://mixpay.me/code/"
    )

    miracle = sub.add_parser("miraclepay", help="MiraclePay (External Payments API)")
    common(miracle)
    miracle.add_argument("--client-id", default="miraclepay-sim-client")
    miracle.add_argument("--api-key", default="miraclepay-sim-key")
    miracle.add_argument(
        "--checkout-base",
        default="https://checkout.miraclepay.com/?sessionId=",
        help="checkout URL prefix; 'local' serves the simulator's own checkout page",
    )

    # `telegram` hands its arguments to the Bot API emulator's own command line.
    sub.add_parser(
        "telegram", help="the Telegram Bot API emulator (python -m testkit.telegram)",
        add_help=False,
    )
    return parser


def _delays(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    return tuple(float(p) for p in text.split(",") if p.strip())


def build_simulator(args: argparse.Namespace) -> GatewaySimulator[Any]:
    """The simulator the arguments describe (not started)."""
    delays = _delays(args.callback_retry_delays)
    if args.gateway == "mion":
        from testkit.mion import MionSimulator

        currencies = (
            None
            if args.currencies.strip().lower() == "any"
            else [c.strip().upper() for c in args.currencies.split(",") if c.strip()]
        )
        return MionSimulator(
            api_key=args.api_key,
            currencies=currencies,
            attempt_ttl=timedelta(seconds=args.attempt_ttl),
            checkout_base=None if args.checkout_base == "local" else args.checkout_base,
            funded_after=None if args.funded_after < 0 else timedelta(seconds=args.funded_after),
            callback_retry_delays=delays,
        )
    if args.gateway == "mixpay":
        from testkit.mixpay import DEFAULT_PAYEE_ID, MIXPAY_CHECKOUT_BASE, MixPaySimulator

        return MixPaySimulator(
            payee_id=args.payee_id or DEFAULT_PAYEE_ID,
            rate_limit_per_minute=args.rate_limit or None,
            checkout_base=args.checkout_base or MIXPAY_CHECKOUT_BASE,
            callback_retry_delays=delays,
        )
    if args.gateway == "miraclepay":
        from testkit.miraclepay import MiraclePaySimulator

        return MiraclePaySimulator(
            client_id=args.client_id,
            api_key=args.api_key,
            checkout_base=None if args.checkout_base == "local" else args.checkout_base,
        )
    raise ValueError(f"unknown simulator {args.gateway!r}")


async def serve(sim: GatewaySimulator[Any], host: str, port: int) -> None:
    """Start `sim`, print its URL, and serve until SIGTERM/SIGINT."""
    url = await sim.start(host=host, port=port)
    print(f"{sim.name} simulator listening on {url}", flush=True)
    try:
        await until_stop_signal()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list and args_list[0] == "telegram":
        from testkit.telegram import main as telegram_main

        return telegram_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        sim = build_simulator(args)
    except ValueError as exc:
        print(f"python -m testkit: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(sim, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
