"""Build the gateway adapters whose credentials are set, from Settings, for the wiring."""

from __future__ import annotations

import asyncio
import random as _random
from datetime import timedelta
from typing import Any

import httpx

from bot.config import Settings
from bot.gateways.base import Gateway
from bot.gateways.http import Backoff, NowFn, RandomFn, SleepFn
from bot.gateways.mion import MionApi, MionGateway
from bot.gateways.miraclepay import MiraclePayGateway
from bot.gateways.mixpay import MixPayGateway


def mion_api(settings: Settings) -> MionApi:
    """Mion's assumed API with the overrides from the settings (MION_*_PATH, ...)."""
    return MionApi(
        create_session=settings.mion_create_session_path,
        status=settings.mion_status_path,
        by_reference=settings.mion_by_reference_path,
        payment_attempts=settings.mion_payment_attempts_path,
        webhooks=settings.mion_webhooks_path,
        api_key_header=settings.mion_api_key_header,
        api_key_prefix=settings.mion_api_key_prefix,
        expiry_format=settings.mion_expiry_format,
        error_message_field=settings.mion_error_message_field,
        webhook_session_field=settings.mion_webhook_session_field,
    )


def build_gateways(
    settings: Settings,
    client: httpx.AsyncClient,
    *,
    sandbox: Gateway | None = None,
    backoff: Backoff | None = None,
    sleep: SleepFn = asyncio.sleep,
    random: RandomFn = _random.random,
    now: NowFn | None = None,
) -> dict[str, Gateway]:
    """name -> adapter for every gateway in `settings.available_gateways()`, in that order.

    The sandbox needs the repository (its sessions live in the bot's database), so the
    wiring opens it (`open_sandbox`) and passes it here; it is included when SANDBOX_ENABLED
    is true and one is given.
    """
    retrying: dict[str, Any] = {
        "max_retries": settings.gateway_max_retries,
        "timeout": settings.gateway_timeout_seconds,
        "backoff": backoff,
        "sleep": sleep,
        "random": random,
        "now": now,
    }
    gateways: dict[str, Gateway] = {}
    for name in settings.available_gateways():
        if name == "sandbox":
            if sandbox is not None:
                gateways["sandbox"] = sandbox
        elif name == "mion":
            assert settings.mion_api_url is not None and settings.mion_api_key is not None
            gateways["mion"] = MionGateway(
                client,
                api_url=settings.mion_api_url,
                api_key=settings.mion_api_key.get_secret_value(),
                checkout_url=settings.mion_checkout_url,
                online_expiry=timedelta(seconds=settings.mion_online_expiry_seconds),
                pos_expiry=timedelta(seconds=settings.mion_pos_expiry_seconds),
                api=mion_api(settings),
                **retrying,
            )
        elif name == "mixpay":
            assert settings.mixpay_payee_id and settings.mixpay_settlement_asset_id
            gateways["mixpay"] = MixPayGateway(
                client,
                payee_id=settings.mixpay_payee_id,
                settlement_asset_id=settings.mixpay_settlement_asset_id,
                api_url=settings.mixpay_api_url,
                quote_asset_id=settings.mixpay_quote_asset_id,
                payment_asset_id=settings.mixpay_payment_asset_id,
                requests_per_minute=settings.mixpay_requests_per_minute,
                expiry=timedelta(seconds=settings.mixpay_expiry_seconds),
                **retrying,
            )
        elif name == "miraclepay":
            assert settings.miraclepay_client_id and settings.miraclepay_api_key
            gateways["miraclepay"] = MiraclePayGateway(
                client,
                client_id=settings.miraclepay_client_id,
                api_key=settings.miraclepay_api_key.get_secret_value(),
                api_url=settings.miraclepay_api_url,
                blockchains=settings.miraclepay_blockchains,
                payer=settings.miraclepay_payer,
                redirect_url=settings.miraclepay_redirect_url,
                **retrying,
            )
    return gateways
