"""The column lists of the schema (see `storage.migrations`) and how a row becomes a model.

Shared by both backends: a row is anything indexable by column name (`sqlite3.Row`,
`asyncpg.Record`), with times as epoch milliseconds and JSON as text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from bot.domain.models import (
    Invoice,
    InvoiceKind,
    InvoiceMessage,
    InvoiceStatus,
    Merchant,
    MessageRole,
    OutboxEvent,
    OutboxItem,
    OutboxKind,
    SandboxSession,
    UserPrefs,
)
from storage.times import from_ms, to_ms


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


INVOICE_COLUMNS = (
    "id, public_token, merchant_id, amount_minor, currency, description, gateway, kind,"
    " status, created_at, updated_at, gateway_session_id, checkout_url, payment, raw_status,"
    " expires_at, paid_at, failure_reason, late, underpaid, next_poll_at, poll_count,"
    " lease_owner, lease_until, not_found_count, not_found_since, number, created_by"
)
MESSAGE_COLUMNS = (
    "id, invoice_id, role, chat_id, message_id, inline_message_id, user_id, is_photo, language"
)
OUTBOX_COLUMNS = (
    "id, kind, event, invoice_id, chat_id, message_row_id, payload, attempts, created_at,"
    " next_attempt_at, sent_at, last_error, dedupe_key"
)
OUTBOX_INSERT_COLUMNS = (
    "kind, event, invoice_id, chat_id, message_row_id, payload, created_at, next_attempt_at,"
    " dedupe_key"
)
MERCHANT_COLUMNS = "user_id, added_by, added_at, name"
PREFS_COLUMNS = "user_id, language, gateway, telegram_language, name"


def dump_json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def load_json(value: str | None) -> dict[str, Any]:
    if not value:
        return {}
    loaded = json.loads(value)
    if not isinstance(loaded, dict):
        raise ValueError(f"expected a JSON object, got {type(loaded).__name__}")
    return loaded


def _time(value: Any) -> datetime:
    result = from_ms(value)
    if result is None:
        raise ValueError("NULL in a NOT NULL time column")
    return result


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def invoice_from_row(row: Row) -> Invoice:
    return Invoice(
        id=int(row["id"]),
        public_token=row["public_token"],
        merchant_id=int(row["merchant_id"]),
        amount_minor=int(row["amount_minor"]),
        currency=row["currency"],
        description=row["description"],
        gateway=row["gateway"],
        kind=InvoiceKind(row["kind"]),
        status=InvoiceStatus(row["status"]),
        created_at=_time(row["created_at"]),
        updated_at=_time(row["updated_at"]),
        gateway_session_id=row["gateway_session_id"],
        checkout_url=row["checkout_url"],
        payment=load_json(row["payment"]),
        raw_status=row["raw_status"],
        expires_at=from_ms(row["expires_at"]),
        paid_at=from_ms(row["paid_at"]),
        failure_reason=row["failure_reason"],
        late=bool(row["late"]),
        underpaid=bool(row["underpaid"]),
        next_poll_at=from_ms(row["next_poll_at"]),
        poll_count=int(row["poll_count"]),
        lease_owner=row["lease_owner"],
        lease_until=from_ms(row["lease_until"]),
        not_found_count=int(row["not_found_count"]),
        not_found_since=from_ms(row["not_found_since"]),
        number=int(row["number"] or 0),
        created_by=_opt_int(row["created_by"]),
    )


def message_from_row(row: Row) -> InvoiceMessage:
    return InvoiceMessage(
        id=int(row["id"]),
        invoice_id=int(row["invoice_id"]),
        role=MessageRole(row["role"]),
        chat_id=_opt_int(row["chat_id"]),
        message_id=_opt_int(row["message_id"]),
        inline_message_id=row["inline_message_id"],
        user_id=_opt_int(row["user_id"]),
        is_photo=bool(row["is_photo"]),
        language=row["language"],
    )


def outbox_from_row(row: Row) -> OutboxItem:
    return OutboxItem(
        id=int(row["id"]),
        kind=OutboxKind(row["kind"]),
        event=OutboxEvent(row["event"]),
        invoice_id=_opt_int(row["invoice_id"]),
        chat_id=_opt_int(row["chat_id"]),
        message_row_id=_opt_int(row["message_row_id"]),
        payload=load_json(row["payload"]),
        attempts=int(row["attempts"]),
        created_at=_time(row["created_at"]),
        next_attempt_at=_time(row["next_attempt_at"]),
        sent_at=from_ms(row["sent_at"]),
        last_error=row["last_error"],
        dedupe_key=row["dedupe_key"],
    )


def merchant_from_row(row: Row) -> Merchant:
    return Merchant(
        user_id=int(row["user_id"]),
        added_by=_opt_int(row["added_by"]),
        added_at=_time(row["added_at"]),
        name=row["name"],
    )


def prefs_from_row(row: Row) -> UserPrefs:
    return UserPrefs(
        user_id=int(row["user_id"]),
        language=row["language"],
        gateway=row["gateway"],
        telegram_language=row["telegram_language"],
        name=row["name"],
    )


MAX_ERROR_LENGTH = 2000


def clip_error(error: str) -> str:
    """Outbox errors are kept for diagnosis; a huge response body is cut."""
    return error if len(error) <= MAX_ERROR_LENGTH else error[: MAX_ERROR_LENGTH - 1] + "…"


# -- the sandbox gateway ------------------------------------------------------------------------
SANDBOX_COLUMNS = (
    "id, reference, amount_minor, currency, retail_pos, status, created_at, expires_at,"
    " paid_at, payment_method, attempts, attempt_expires_at, auto_pay_at, version"
)
# What `sandbox_update` writes (everything but the id and the version).
SANDBOX_CHANGED_COLUMNS = (
    "reference", "amount_minor", "currency", "retail_pos", "status", "created_at",
    "expires_at", "paid_at", "payment_method", "attempts", "attempt_expires_at", "auto_pay_at",
)


def sandbox_values(session: SandboxSession) -> tuple[Any, ...]:
    """The row of a session in SANDBOX_COLUMNS order but the version (times as epoch ms)."""
    return (
        session.session_id,
        *sandbox_changed_values(session),
    )


def sandbox_changed_values(session: SandboxSession) -> tuple[Any, ...]:
    """The values of SANDBOX_CHANGED_COLUMNS, in that order."""
    return (
        session.reference,
        session.amount_minor,
        session.currency,
        session.retail_pos,
        session.status,
        to_ms(session.created_at),
        to_ms(session.expires_at),
        to_ms(session.paid_at),
        session.payment_method,
        session.attempts,
        to_ms(session.attempt_expires_at),
        to_ms(session.auto_pay_at),
    )


def sandbox_from_row(row: Row) -> SandboxSession:
    return SandboxSession(
        session_id=str(row["id"]),
        reference=row["reference"],
        amount_minor=int(row["amount_minor"]),
        currency=str(row["currency"]),
        retail_pos=bool(row["retail_pos"]),
        status=str(row["status"]),
        created_at=_time(row["created_at"]),
        expires_at=_time(row["expires_at"]),
        paid_at=from_ms(row["paid_at"]),
        payment_method=row["payment_method"],
        attempts=int(row["attempts"]),
        attempt_expires_at=from_ms(row["attempt_expires_at"]),
        auto_pay_at=from_ms(row["auto_pay_at"]),
        version=int(row["version"]),
    )
