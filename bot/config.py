"""Settings, read once at start from the environment and an optional `.env` file."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from decimal import Decimal
from string import Formatter
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.gateways.mixpay_wire import payment_asset_problem, quote_asset_problem

GatewayName = Literal["sandbox", "mion", "mixpay", "miraclepay"]


_ASCII_INT = re.compile(r"-?[0-9]{1,16}")


def _id_list(value: object) -> object:
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
        # ASCII digits only: `int("١٢٣")` is 123 and `"²".isdigit()` is True
        if not all(_ASCII_INT.fullmatch(p) for p in parts):
            raise ValueError("must be comma-separated Telegram user ids (numbers)")
        return [int(p) for p in parts]
    if isinstance(value, int):
        return [value]
    return value


def _str_list(value: object) -> object:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return value


class Settings(BaseSettings):
    """Every setting Tillbot reads; names are the environment variables (see README)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Telegram
    telegram_bot_token: SecretStr
    telegram_api_url: str = "https://api.telegram.org"
    telegram_webhook_secret: SecretStr | None = None

    # Storage
    database_url: str = "sqlite:///tillbot.db"

    # People
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    merchant_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    # Payments
    default_gateway: GatewayName = "sandbox"
    default_currency: str = "EUR"
    max_amount: Decimal = Decimal("1000000")
    max_description_length: int = Field(default=200, ge=1, le=1000)
    invoice_expiry_seconds: int = Field(default=3600, ge=60)
    poll_interval_seconds: float = Field(default=5.0, gt=0)
    poll_max_interval_seconds: float = Field(default=60.0, gt=0)
    # Mion advises polling a point-of-sale session every 0.5 to 1 s: the fast end, so that
    # "paid" is seen and shown within 600 ms (p99) at the counter.
    pos_poll_interval_seconds: float = Field(default=0.5, gt=0)
    callback_poll_interval_seconds: float = Field(default=120.0, gt=0)
    late_payment_watch_seconds: int = Field(default=86400, ge=0)
    # A gateway's "no such session" can be transient: give a session up only after this many
    # consecutive ones spread over at least this long.
    not_found_give_up_answers: int = Field(default=5, ge=1)
    not_found_give_up_seconds: float = Field(default=300.0, ge=0)

    # The shops' time zone (IANA name, e.g. Europe/Berlin) unless one is set in /settings:
    # times shown, receipts, report days and the shift close use it.
    timezone: str = "UTC"

    # HTTP server (webhooks, health, metrics)
    http_port: int | None = None
    port: int | None = None
    public_url: str | None = None
    metrics_token: SecretStr | None = None  # GET /metrics then needs "Bearer <token>"
    http_max_connections: int = Field(default=256, ge=8, le=100_000)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    http_body_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)

    # Sandbox gateway (sessions in the bot's own database; no port, no process). Unset: on
    # only while no real gateway is configured; a real gateway turns it off unless this is
    # set to true explicitly (a test payment must never be mistaken for money).
    sandbox_enabled: bool | None = None
    sandbox_auto_pay_seconds: float | None = Field(default=None, gt=0)

    # Mion
    mion_api_url: str | None = None
    mion_api_key: SecretStr | None = None
    mion_checkout_url: str = "https://app.mion.group/checkout/"
    mion_online_expiry_seconds: int = Field(default=86400, ge=60)
    mion_pos_expiry_seconds: int = Field(default=900, ge=60)
    mion_attempt_renew_before_seconds: float = Field(default=15.0, ge=1)
    # Mion's API reference is not public: every assumption about it can be overridden here
    # (defaults in `bot.gateways.mion.MionApi`; the README lists them).
    mion_create_session_path: str = "/payment-sessions"
    mion_status_path: str = "/payment-sessions/{id}/status"
    mion_by_reference_path: str = "/payment-sessions/by-reference/{reference}"
    mion_payment_attempts_path: str = "/payment-sessions/{id}/payment-attempts"
    mion_webhooks_path: str = "/payment-sessions/{id}/webhooks"
    mion_api_key_header: str = Field(default="x-api-key", pattern=r"^[A-Za-z0-9-]+$")
    mion_api_key_prefix: str = ""
    mion_expiry_format: Literal["iso", "unix", "seconds"] = "iso"
    mion_error_message_field: str = Field(default="message", min_length=1)
    mion_webhook_session_field: str = Field(default="paymentSessionId", min_length=1)

    # MixPay
    mixpay_api_url: str = "https://api.mixpay.me/v1"
    mixpay_payee_id: str | None = None
    mixpay_settlement_asset_id: str | None = None
    mixpay_quote_asset_id: str = "usd"
    mixpay_payment_asset_id: str | None = None
    mixpay_requests_per_minute: int = Field(default=50, ge=1, le=60)
    mixpay_expiry_seconds: int = Field(default=3600, ge=11, le=2880 * 60 - 1)

    # MiraclePay
    miraclepay_api_url: str = "https://api.miraclecash.info"
    miraclepay_client_id: str | None = None
    miraclepay_api_key: SecretStr | None = None
    miraclepay_blockchains: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["btc", "eth"]
    )
    miraclepay_payer: Literal["customer", "merchant"] = "customer"
    miraclepay_redirect_url: str | None = None

    # Gateway HTTP
    gateway_timeout_seconds: float = Field(default=10.0, gt=0)
    gateway_max_retries: int = Field(default=3, ge=0, le=10)
    # /invoice, /pos, /onchain: the whole creation at the gateway, retries included.
    invoice_create_timeout_seconds: float = Field(default=15.0, gt=0, le=300)

    # Telegram's limits, kept for replies and the outbox alike; on PostgreSQL shared by all
    # instances through the database (one budget for the bot, not one per instance)
    telegram_messages_per_second: float = Field(default=25.0, gt=0, le=1000)
    telegram_chat_interval_seconds: float = Field(default=1.0, ge=0)
    telegram_group_interval_seconds: float = Field(default=3.1, ge=0)
    # Updates handled at once, and HTTP connections to Telegram (measured in bench/)
    concurrent_updates: int = Field(default=64, ge=1, le=1024)
    telegram_connection_pool: int = Field(default=128, ge=1, le=1024)

    # Operations
    log_level: str = "INFO"
    instance_id: str | None = None
    # The inbox (issue 12): updates stored before Telegram is told they arrived.
    inbox_enabled: bool = True
    inbox_lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Liveness: each instance heartbeats into the database this often; one silent for
    # HEARTBEAT_STALE_BEATS beats is taken for dead and its claimed work taken over.
    heartbeat_seconds: float = Field(default=2.0, gt=0, le=60)
    heartbeat_stale_beats: int = Field(default=3, ge=2, le=100)

    _split_ids = field_validator("admin_ids", "merchant_ids", mode="before")(_id_list)
    _split_chains = field_validator("miraclepay_blockchains", mode="before")(_str_list)

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()
        if not token or ":" not in token or any(c.isspace() for c in token):
            raise ValueError("must look like 123456:ABC-DEF (from @BotFather)")
        return SecretStr(token)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        name = value.strip() or "UTC"
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as Europe/Berlin") from None
        return name

    @field_validator("default_currency")
    @classmethod
    def _currency_upper(cls, value: str) -> str:
        return value.strip().upper()

    @field_validator("max_amount")
    @classmethod
    def _positive_max(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value <= 0:
            raise ValueError("must be a positive number")
        return value

    @field_validator(
        "telegram_api_url", "mixpay_api_url", "miraclepay_api_url", "mion_checkout_url"
    )
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("mion_api_url", "public_url")
    @classmethod
    def _optional_http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _mion_paths(self) -> Settings:
        needs = {
            "mion_create_session_path": set(),
            "mion_status_path": {"id"},
            "mion_by_reference_path": {"reference"},
            "mion_payment_attempts_path": {"id"},
            "mion_webhooks_path": {"id"},
        }
        for name, placeholders in needs.items():
            template = getattr(self, name)
            try:
                found = {f for _, f, _, _ in Formatter().parse(template) if f is not None}
            except ValueError:
                found = {"?"}
            if not template.startswith("/") or found != placeholders:
                wanted = " and ".join(f"{{{p}}}" for p in sorted(placeholders)) or "no {...}"
                raise ValueError(f"{name.upper()} must be a path starting with / with {wanted}")
        return self

    @model_validator(mode="after")
    def _inbox_lease_outlasts_a_creation(self) -> Settings:
        # A lease lapsing while its update is still being handled would let another
        # instance start the same command (it would resume it, not double it, but answer
        # it twice).
        if self.inbox_lease_seconds < self.invoice_create_timeout_seconds + 5:
            raise ValueError(
                "INBOX_LEASE_SECONDS must be at least INVOICE_CREATE_TIMEOUT_SECONDS + 5"
            )
        return self

    @model_validator(mode="after")
    def _default_gateway_configured(self) -> Settings:
        available = self.available_gateways()
        if "default_gateway" not in self.model_fields_set and available and (
            self.default_gateway not in available
        ):
            # Unset and the sandbox is off: the first real gateway configured.
            self.default_gateway = available[0]
        if self.default_gateway not in self.available_gateways():
            raise ValueError(
                f"DEFAULT_GATEWAY={self.default_gateway} but that gateway's credentials are not set"
            )
        return self

    @model_validator(mode="after")
    def _webhook_url_is_https(self) -> Settings:
        # Telegram delivers webhooks and MixPay sends callbacks only to HTTPS URLs.
        if self.http_listen_port is not None and self.public_url is not None and (
            not self.public_url.startswith("https://")
        ):
            raise ValueError(
                "PUBLIC_URL must start with https:// in webhook mode (Telegram and MixPay "
                "call only HTTPS URLs; end TLS at a proxy in front of HTTP_PORT)"
            )
        return self

    @model_validator(mode="after")
    def _mixpay_assets_usable(self) -> Settings:
        if "mixpay" not in self.available_gateways():
            return self
        quote = quote_asset_problem(self.mixpay_quote_asset_id)
        if quote is not None:
            raise ValueError(f"MIXPAY_QUOTE_ASSET_ID: {quote}")
        payment = payment_asset_problem(self.mixpay_payment_asset_id)
        if payment is not None:
            raise ValueError(f"MIXPAY_PAYMENT_ASSET_ID: {payment}")
        return self

    # -- derived --------------------------------------------------------------------------
    def available_gateways(self) -> list[GatewayName]:
        """Gateways whose credentials are set, in a stable order."""
        found: list[GatewayName] = []
        if self.sandbox_on:
            found.append("sandbox")
        if self.mion_api_url and self.mion_api_key:
            found.append("mion")
        if self.mixpay_payee_id and self.mixpay_settlement_asset_id:
            found.append("mixpay")
        if self.miraclepay_client_id and self.miraclepay_api_key:
            found.append("miraclepay")
        return found

    @property
    def real_gateway_configured(self) -> bool:
        return bool(
            (self.mion_api_url and self.mion_api_key)
            or (self.mixpay_payee_id and self.mixpay_settlement_asset_id)
            or (self.miraclepay_client_id and self.miraclepay_api_key)
        )

    @property
    def sandbox_on(self) -> bool:
        """SANDBOX_ENABLED as set; unset: on only while no real gateway is configured."""
        if self.sandbox_enabled is not None:
            return self.sandbox_enabled
        return not self.real_gateway_configured

    @property
    def http_listen_port(self) -> int | None:
        return self.http_port if self.http_port is not None else self.port

    @property
    def webhook_secret(self) -> str:
        """Telegram's secret_token: set, or derived from the bot token so instances agree."""
        if self.telegram_webhook_secret is not None:
            return self.telegram_webhook_secret.get_secret_value()
        digest = hashlib.sha256(
            b"tillbot-webhook:" + self.telegram_bot_token.get_secret_value().encode()
        ).hexdigest()
        return digest[:64]

    @property
    def invoice_expiry(self) -> timedelta:
        return timedelta(seconds=self.invoice_expiry_seconds)

    def secrets(self) -> list[str]:
        """Every secret value, for the log filter that redacts them."""
        values = [
            self.telegram_bot_token,
            self.telegram_webhook_secret,
            self.mion_api_key,
            self.miraclepay_api_key,
            self.metrics_token,
        ]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        # Derived secrets are secrets too: the derived webhook secret lets anyone who reads
        # it post updates as any user (python-telegram-bot logs setWebhook's parameters).
        return [*found, self.webhook_secret]


class SettingsError(Exception):
    """A setting is missing or invalid; the message names it and never shows its value."""


def load_settings(**overrides: object) -> Settings:
    """Read settings; raise SettingsError with one line naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    parts: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = [str(p) for p in error.get("loc", ()) if not str(p).isdigit()]
        name = loc[0].upper() if loc else ""
        kind = error.get("type", "")
        msg = "is missing" if kind == "missing" else str(error.get("msg", "is invalid"))
        msg = msg.removeprefix("Value error, ")
        parts.append(f"{name} {msg}" if name else msg)
    return "invalid settings: " + "; ".join(parts)
