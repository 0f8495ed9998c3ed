"""The counter Mini App over HTTP, everything under /app/ (bot/web.py mounts it):

GET  /app/                          the page (static files of this package, no build step)
GET  /app/api/me                    who the caller is: {"user_id", "role", "language", "texts"}
GET  /app/api/setup                 a merchant's keypad: currency, gateways, tip percentages
POST /app/api/sales                 a merchant's sale: amount, note, gateway, tip -> invoice
GET  /app/api/today?tz=<minutes>    a merchant's paid sales since local midnight
GET  /app/api/invoices/<token>      the invoice whose public token the caller holds
GET  /app/api/invoices/<token>/events   its live status (Server-Sent Events)
POST /app/api/invoices/<token>/cancel   its merchant cancels it

Every API call carries `Authorization: tma <initData>` (bot/webapp/auth.py): missing,
forged or stale -> 401 and nothing done. The handlers call services only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.domain.drafts import InputError, NotAllowed
from bot.domain.models import Invoice, InvoiceKind, InvoiceStatus
from bot.domain.tips import CounterSale
from bot.gateways.base import GatewayError
from bot.i18n import format_amount, resolve_language, t
from bot.telegram.context import TillbotApp
from bot.telegram.qr import qr_png
from bot.telegram.views import error_text, has_qr, qr_for, sats_text
from bot.times import parse_time
from bot.webapp.auth import InitDataError, WebAppUser, from_header, validate
from storage.times import to_ms

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().with_name("static")
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
TELEGRAM_JS = "https://telegram.org"
CSP = (
    "default-src 'none'; "
    f"script-src 'self' {TELEGRAM_JS}; "
    "style-src 'self'; "
    "img-src 'self' data:; "
    "connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'self' https://web.telegram.org https://*.telegram.org"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOOK_INTERVAL = 0.5  # a live stream re-reads its invoice at least this often (seconds)
HEARTBEAT = 15.0
STREAM_LIMIT = 30 * 60.0  # a stream ends after this; the page reconnects
MAX_NOTE = 200

Handler = Callable[[web.Request, WebAppUser], Awaitable[web.StreamResponse]]


class CounterWeb:
    """The routes of the counter; `close()` ends the live streams when the server stops."""

    def __init__(self, app: TillbotApp) -> None:
        self.app = app
        self.files = {name: (STATIC / name).read_bytes() for name in FILES}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/app", self.to_index)
        router.add_get("/app/", self.index)
        router.add_get("/app/{name:(app\\.js|app\\.css|index\\.html)}", self.static)
        router.add_get("/app/api/me", self._auth(self.me))
        router.add_get("/app/api/setup", self._auth(self.setup))
        router.add_post("/app/api/sales", self._auth(self.create_sale))
        router.add_get("/app/api/today", self._auth(self.today))
        router.add_get("/app/api/invoices/{token}", self._auth(self.invoice))
        router.add_get("/app/api/invoices/{token}/events", self._auth(self.events))
        router.add_post("/app/api/invoices/{token}/cancel", self._auth(self.cancel))

    def close(self) -> None:
        self.app.bot_data.live.close()

    # -- the page -------------------------------------------------------------------------
    async def to_index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/app/" + (f"?{request.query_string}" if request.query_string else ""))

    async def index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def static(self, request: web.Request) -> web.Response:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.Response:
        return web.Response(
            body=self.files[name], headers={"Content-Type": FILES[name], **SECURITY_HEADERS}
        )

    # -- authentication -------------------------------------------------------------------
    def _auth(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def checked(request: web.Request) -> web.StreamResponse:
            services = self.app.bot_data
            token = services.settings.telegram_bot_token.get_secret_value()
            try:
                user = validate(
                    from_header(request.headers.get("Authorization")), token, services.clock()
                )
            except InitDataError as exc:
                log.debug("Mini App call refused: %s", exc)
                return _json(
                    {"error": "unauthorized"}, 401, {"WWW-Authenticate": 'tma realm="app"'}
                )
            return await handler(request, user)

        return checked

    async def _language(self, user: WebAppUser) -> str:
        prefs = await self.app.bot_data.prefs(user.user_id)
        return resolve_language(prefs.language, user.language_code)

    def _refusal(self, language: str, exc: InputError, status: int = 400) -> web.Response:
        return _json(
            {"error": exc.code, "message": error_text(language, exc.code, exc.params, html=False)},
            status,
        )

    # -- the API --------------------------------------------------------------------------
    async def me(self, request: web.Request, user: WebAppUser) -> web.StreamResponse:
        counter = self.app.bot_data.payments.counter
        language = await self._language(user)
        return _json(
            {
                "user_id": user.user_id,
                "role": await counter.role(user.user_id),
                "first_name": user.first_name,
                "language": language,
                "texts": page_texts(language),
            }
        )

    async def setup(self, request: web.Request, user: WebAppUser) -> web.StreamResponse:
        counter = self.app.bot_data.payments.counter
        try:
            setup = await counter.setup(user.user_id)
        except NotAllowed:
            return _json({"error": "merchants only"}, 403)
        except InputError as exc:
            return self._refusal(await self._language(user), exc, 409)
        return _json(
            {
                "currency": setup.currency,
                "decimals": setup.decimals,
                "max_amount": str(self.app.bot_data.settings.max_amount),
                "tip_percents": list(setup.tip_percents),
                "options": [
                    {"key": o.key, "gateway": o.gateway, "kind": o.kind.value, "title": o.title}
                    for o in setup.options
                ],
            }
        )

    async def create_sale(self, request: web.Request, user: WebAppUser) -> web.StreamResponse:
        services = self.app.bot_data
        language = await self._language(user)
        try:
            async with asyncio.timeout(services.settings.http_body_timeout_seconds):
                raw = await request.read()
        except TimeoutError:
            return _json({"error": "request body too slow"}, 408, {"Connection": "close"})
        try:
            body = json.loads(raw or b"{}", parse_float=Decimal)
        except (ValueError, RecursionError):
            return _json({"error": "malformed"}, 400)
        if not isinstance(body, dict):
            return _json({"error": "malformed"}, 400)
        given_tip = body.get("tip")
        tip: dict[str, object] = given_tip if isinstance(given_tip, dict) else {}
        amount, note, option = body.get("amount"), body.get("note", ""), body.get("option")
        if not isinstance(amount, str) or not isinstance(note, str):
            return _json({"error": "malformed"}, 400)
        try:
            invoice, sale = await services.payments.counter.create_sale(
                user.user_id,
                amount_text=amount,
                note=note[:MAX_NOTE],
                option_key=option if isinstance(option, str) else None,
                tip_kind=str(tip.get("kind", "none")),
                tip_percent=tip.get("percent"),
            )
        except NotAllowed:
            return _json({"error": "merchants only"}, 403)
        except InputError as exc:
            return self._refusal(language, exc)
        except GatewayError as exc:
            title = services.view.title(str(option or "").split(":")[0])
            message = (
                t(language, "gateway_busy", gateway=title) if exc.retryable else exc.user_message
            )
            return _json({"error": "gateway", "message": message}, 502)
        return _json(await self._view(invoice, sale, True, language), 201)

    async def today(self, request: web.Request, user: WebAppUser) -> web.StreamResponse:
        counter = self.app.bot_data.payments.counter
        language = await self._language(user)
        try:
            offset = int(request.query.get("tz", "0")[:6])
        except ValueError:
            offset = 0
        try:
            days = await counter.today(user.user_id, offset)
        except NotAllowed:
            return _json({"error": "merchants only"}, 403)
        return _json(
            {
                "count": sum(d.count for d in days),
                "sales": [
                    {
                        "currency": d.currency,
                        "count": d.count,
                        "total": format_amount(d.total_minor, d.currency, language),
                        "tips": format_amount(d.tips_minor, d.currency, language),
                        "total_minor": d.total_minor,
                        "tips_minor": d.tips_minor,
                    }
                    for d in days
                ],
            }
        )

    async def _find(
        self, request: web.Request, user: WebAppUser
    ) -> tuple[Invoice, CounterSale | None, bool] | None:
        counter = self.app.bot_data.payments.counter
        try:
            return await counter.invoice_by_token(user.user_id, request.match_info["token"])
        except NotAllowed:
            return None

    async def invoice(self, request: web.Request, user: WebAppUser) -> web.StreamResponse:
        found = await self._find(request, user)
        if found is None:
            return _json({"error": "not found"}, 404)
        return _json(await self._view(*found, await self._language(user)))

    async def cancel(self, request: web.Request, user: WebAppUser) -> web.StreamResponse:
        found = await self._find(request, user)
        if found is None:
            return _json({"error": "not found"}, 404)
        invoice, sale, mine = found
        language = await self._language(user)
        if not mine:
            return _json({"error": "not yours"}, 403)
        try:
            invoice, _ = await self.app.bot_data.payments.cancel(user.user_id, invoice.id)
        except NotAllowed:
            return _json({"error": "not yours"}, 403)
        except InputError as exc:
            return self._refusal(language, exc, 409)
        return _json(await self._view(invoice, sale, mine, language))

    async def events(self, request: web.Request, user: WebAppUser) -> web.StreamResponse:
        """The invoice now, then again whenever it changes, as Server-Sent Events; the
        stream ends once it is final (or the server stops)."""
        found = await self._find(request, user)
        if found is None:
            return _json({"error": "not found"}, 404)
        invoice, sale, mine = found
        services = self.app.bot_data
        language = await self._language(user)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
                "X-Content-Type-Options": "nosniff",
            }
        )
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        started = last_beat = loop.time()
        shown: tuple[object, ...] | None = None
        try:
            while not services.live.closed and loop.time() - started < STREAM_LIMIT:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break  # the page went away
                seen = shown_state(invoice)
                if seen != shown:
                    view = await self._view(invoice, sale, mine, language)
                    await response.write(f"event: invoice\ndata: {json.dumps(view)}\n\n".encode())
                    shown = seen
                    if invoice.status is InvoiceStatus.PAID:
                        break
                elif loop.time() - last_beat > HEARTBEAT:
                    await response.write(b": keep-alive\n\n")
                    last_beat = loop.time()
                await services.live.wait(LOOK_INTERVAL)
                invoice = await services.payments.counter.reread(invoice)
        except ConnectionResetError:  # the page went away while we wrote
            return response
        return response

    # -- what the page shows --------------------------------------------------------------
    async def _view(
        self, invoice: Invoice, sale: CounterSale | None, mine: bool, language: str
    ) -> dict[str, Any]:
        services = self.app.bot_data
        payment = invoice.payment
        currency = invoice.currency
        pay_uri: str | None = None
        qr: bytes | None = None
        pending = invoice.status is InvoiceStatus.PENDING
        if pending and has_qr(invoice):
            qr = await asyncio.to_thread(qr_for, invoice)
            if invoice.kind is InvoiceKind.LIGHTNING:
                pay_uri = f"lightning:{payment['ln_invoice']}"
            else:
                pay_uri = str(payment.get("address"))
        elif pending and invoice.checkout_url:
            pay_uri = invoice.checkout_url
            qr = await asyncio.to_thread(qr_png, pay_uri)
        attempt_ms = None
        if invoice.kind is InvoiceKind.LIGHTNING and payment.get("attempt_expires_at"):
            attempt = parse_time(payment.get("attempt_expires_at"))
            attempt_ms = to_ms(attempt) if attempt is not None else None
        base = sale.amount_minor if sale else invoice.amount_minor
        tip = sale.tip_minor if sale else 0
        msat = payment.get("amount_msat")
        return {
            "token": invoice.public_token,
            "id": invoice.id,
            "status": invoice.status.value,
            "status_text": t(language, f"status_{invoice.status.value}"),
            "late": invoice.late,
            "kind": invoice.kind.value,
            "gateway": services.view.title(invoice.gateway),
            "currency": currency,
            "total": format_amount(invoice.amount_minor, currency, language),
            "total_minor": invoice.amount_minor,
            "amount": format_amount(base, currency, language),
            "tip": format_amount(tip, currency, language) if tip else None,
            "tip_minor": tip,
            "note": invoice.description,
            "sats": sats_text(int(msat), language) if pending and msat is not None else None,
            "pay_uri": pay_uri,
            "qr": "data:image/png;base64," + base64.b64encode(qr).decode() if qr else None,
            "attempt_expires_at": attempt_ms,
            "expires_at": to_ms(invoice.expires_at),
            "paid_at": to_ms(invoice.paid_at),
            "server_now": to_ms(services.clock()),
            "mine": mine,
        }


def shown_state(invoice: Invoice) -> tuple[object, ...]:
    """What the page shows of an invoice: a stream sends it again only when this changes
    (a poll that found nothing new changes `updated_at`, not this)."""
    payment = invoice.payment
    return (
        invoice.status,
        invoice.late,
        invoice.underpaid,
        payment.get("ln_invoice"),
        payment.get("attempt_expires_at"),
        payment.get("address"),
        invoice.checkout_url,
    )


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        body, status=status, headers={**SECURITY_HEADERS, **(headers or {})}
    )


def page_texts(language: str) -> dict[str, str]:
    """Every text the page shows, in the caller's language (from the catalogues)."""
    return {
        "title": t(language, "app_title"),
        "loading": t(language, "app_loading"),
        "merchants_only": t(language, "app_merchants_only"),
        "note": t(language, "app_note"),
        "charge": t(language, "app_charge"),
        "kind_lightning": t(language, "app_kind_lightning"),
        "kind_checkout": t(language, "app_kind_checkout"),
        "tip_title": t(language, "app_tip_title"),
        "tip_none": t(language, "app_tip_none"),
        "tip_round": t(language, "app_tip_round"),
        "tip_label": t(language, "app_tip_label"),
        "scan": t(language, "app_scan"),
        "open_checkout": t(language, "app_open_checkout"),
        "copy": t(language, "app_copy"),
        "copied": t(language, "app_copied"),
        "expires_in": t(language, "app_expires_in"),
        "renewing": t(language, "app_renewing"),
        "paid": t(language, "app_paid"),
        "new_sale": t(language, "app_new_sale"),
        "expired": t(language, "app_expired"),
        "cancelled": t(language, "app_cancelled"),
        "failed": t(language, "app_failed"),
        "cancel": t(language, "app_cancel"),
        "back": t(language, "app_back"),
        "today": t(language, "app_today"),
        "today_total": t(language, "app_today_total"),
        "today_tips": t(language, "app_today_tips"),
        "error": t(language, "app_error"),
        "not_found": t(language, "app_not_found"),
    }
