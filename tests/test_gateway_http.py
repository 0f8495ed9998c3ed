"""The gateway HTTP module (retries, backoff, Retry-After, error translation) and the request
budget, with `httpx.MockTransport` as the seam: no patching, fake sleep/random/clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from bot.gateways.base import (
    GatewayAuthError,
    GatewayError,
    GatewayNotFound,
    GatewayRateLimited,
    GatewayRejected,
    GatewayUnavailable,
    PaymentState,
    SessionRequest,
)
from bot.gateways.budget import BudgetDeferred, RequestBudget, callback_requests
from bot.gateways.http import (
    Backoff,
    GatewayAnswerLost,
    GatewayHttp,
    HttpFailure,
    decimal_from_minor,
    decimal_text,
    iso_z,
    minor_from_text,
    parse_time,
    retry_after_seconds,
)
from bot.gateways.mion import MionGateway
from bot.gateways.mixpay import MixPayGateway
from storage.models import InvoiceKind

NOW = datetime(2026, 11, 21, 22, 0, 0, tzinfo=UTC)
SECRET = "s3cr3t-MARKER-key-0042"

Handler = Callable[[httpx.Request], httpx.Response]


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def sequence(*values: float) -> Callable[[], float]:
    it: Iterator[float] = iter(values)
    return lambda: next(it)


def responder(*steps: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering each request with the next step (the last one repeats)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = steps[min(len(seen) - 1, len(steps) - 1)]
        if isinstance(step, Exception):
            raise step
        return step

    return handle, seen


def ok(body: Any = None, **kw: Any) -> httpx.Response:
    return httpx.Response(200, json={"ok": True} if body is None else body, **kw)


def make_http(
    handler: Handler,
    *,
    sleeps: Sleeps | None = None,
    random: Callable[[], float] = lambda: 0.5,
    max_retries: int = 3,
    backoff: Backoff | None = None,
    **kw: Any,
) -> GatewayHttp:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return GatewayHttp(
        client, gateway="mion", title="Mion", base_url="https://gw.example/api",
        headers={"x-api-key": SECRET}, secrets=[SECRET], max_retries=max_retries,
        backoff=backoff or Backoff(base=1.0, factor=2.0, max_delay=8.0, max_retry_after=30.0),
        sleep=sleeps or Sleeps(), random=random, now=lambda: NOW, **kw,
    )


# -- backoff ----------------------------------------------------------------------------------
def test_backoff_is_exponential_capped_and_jittered() -> None:
    b = Backoff(base=1.0, factor=2.0, max_delay=8.0)
    assert [b.delay(n, 1.0) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert [b.delay(n, 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for n in range(40):
        for r in (0.0, 0.1, 0.37, 0.9, 1.0):
            d = b.delay(n, r)
            raw = min(8.0, 2.0**n)
            assert raw / 2 <= d <= raw <= 8.0
    # Jitter: different random draws give different delays.
    assert len({b.delay(2, r) for r in (0.0, 0.25, 0.5, 0.75, 1.0)}) == 5


async def test_backoff_between_retries_through_the_module() -> None:
    handler, seen = responder(httpx.Response(503))
    sleeps = Sleeps()
    http = make_http(handler, sleeps=sleeps, random=sequence(0.0, 1.0, 0.5, 0.0, 1.0),
                     max_retries=5)
    with pytest.raises(GatewayUnavailable) as info:
        await http.request("GET", "/status")
    assert len(seen) == 6
    assert sleeps.calls == [0.5, 2.0, 3.0, 4.0, 8.0]
    assert info.value.user_message == "Mion is having trouble (HTTP 503); try again in a minute"


# -- Retry-After ------------------------------------------------------------------------------
def test_retry_after_parsing() -> None:
    assert retry_after_seconds("3", NOW) == 3.0
    assert retry_after_seconds(" 1.5 ", NOW) == 1.5
    assert retry_after_seconds("-4", NOW) == 0.0
    assert retry_after_seconds(format_datetime(NOW + timedelta(seconds=5), usegmt=True), NOW) == 5
    assert retry_after_seconds("Sat, 21 Nov 2026 22:01:00 GMT", NOW) == 60.0
    assert retry_after_seconds(format_datetime(NOW - timedelta(hours=1), usegmt=True), NOW) == 0
    for junk in (None, "", "soon", "NaN", "Infinity"):
        assert retry_after_seconds(junk, NOW) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0", 0.0),
        (format_datetime(NOW + timedelta(seconds=7), usegmt=True), 7.0),
        ("600", 30.0),  # capped at max_retry_after
        (format_datetime(NOW + timedelta(hours=2), usegmt=True), 30.0),
    ],
)
async def test_429_retry_after_is_honoured_and_capped(header: str, expected: float) -> None:
    handler, seen = responder(httpx.Response(429, headers={"Retry-After": header}), ok())
    sleeps = Sleeps()
    http = make_http(handler, sleeps=sleeps)
    assert await http.request("GET", "/status") == {"ok": True}
    assert sleeps.calls == [expected]
    assert len(seen) == 2


async def test_429_without_retry_after_backs_off_and_then_raises_rate_limited() -> None:
    handler, seen = responder(httpx.Response(429))
    sleeps = Sleeps()
    http = make_http(handler, sleeps=sleeps, random=lambda: 1.0, max_retries=2)
    with pytest.raises(GatewayRateLimited) as info:
        await http.request("GET", "/status")
    assert sleeps.calls == [1.0, 2.0]
    assert len(seen) == 3
    assert info.value.retryable


async def test_503_retry_after_is_honoured() -> None:
    handler, _ = responder(httpx.Response(503, headers={"Retry-After": "2"}), ok())
    sleeps = Sleeps()
    await make_http(handler, sleeps=sleeps).request("GET", "/x")
    assert sleeps.calls == [2.0]


# -- what is retried --------------------------------------------------------------------------
RETRIED: list[httpx.Response | Exception] = [
    httpx.Response(500),
    httpx.Response(502, text="<html>Bad Gateway</html>"),
    httpx.Response(503),
    httpx.Response(504),
    httpx.Response(200, text='{"status": "fund'),  # malformed JSON
    httpx.ReadTimeout("read timed out"),
    httpx.ConnectTimeout("connect timed out"),
    httpx.ConnectError("connection refused"),
    httpx.RemoteProtocolError("server disconnected"),
    httpx.ReadError("connection reset"),
]


@pytest.mark.parametrize("failure", RETRIED, ids=lambda f: repr(f)[:40])
async def test_transient_failures_are_retried(failure: httpx.Response | Exception) -> None:
    handler, seen = responder(failure, failure, ok({"status": "funded"}))
    sleeps = Sleeps()
    http = make_http(handler, sleeps=sleeps)
    assert await http.request("GET", "/status") == {"status": "funded"}
    assert len(seen) == 3
    assert sleeps.calls == [0.75, 1.5]


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, GatewayRejected), (401, GatewayAuthError), (403, GatewayAuthError),
     (404, GatewayNotFound), (409, GatewayRejected), (422, GatewayRejected)],
)
async def test_other_4xx_are_not_retried(status: int, error: type[GatewayError]) -> None:
    handler, seen = responder(httpx.Response(status, json={"message": "no good"}), ok())
    sleeps = Sleeps()
    with pytest.raises(error) as info:
        await make_http(handler, sleeps=sleeps).request("POST", "/payment-sessions", json_body={})
    assert len(seen) == 1 and sleeps.calls == []
    assert not info.value.retryable
    assert info.value.gateway == "mion"
    if status in (400, 409, 422):
        assert info.value.user_message == "Mion: no good"


async def test_malformed_json_exhausted_is_unavailable() -> None:
    handler, seen = responder(httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(GatewayUnavailable) as info:
        await make_http(handler, max_retries=2).request("GET", "/status")
    assert len(seen) == 3
    assert info.value.retryable and info.value.code == "malformed"
    assert "could not read" in info.value.user_message


async def test_parse_errors_count_as_malformed_and_are_retried() -> None:
    handler, seen = responder(ok({"nope": 1}), ok({"status": "funded"}))

    def parse(body: Any) -> str:
        return str(body["status"])

    assert await make_http(handler).request("GET", "/status", parse=parse) == "funded"
    assert len(seen) == 2


# -- non-idempotent calls ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow connect"),
     httpx.Response(429, headers={"Retry-After": "1"})],
    ids=["connect-error", "connect-timeout", "429"],
)
async def test_retry_false_still_retries_what_proves_nothing_was_done(
    failure: httpx.Response | Exception,
) -> None:
    handler, seen = responder(failure, ok({"id": "s1"}))
    result = await make_http(handler).request("POST", "/create", json_body={}, retry=False)
    assert result == {"id": "s1"} and len(seen) == 2


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("t"), httpx.RemoteProtocolError("reset"), httpx.Response(500),
     httpx.Response(502, text="<html/>"), httpx.Response(201, text="{trunc")],
    ids=["read-timeout", "reset", "500", "502", "malformed"],
)
async def test_retry_false_raises_answer_lost_without_retrying(
    failure: httpx.Response | Exception,
) -> None:
    handler, seen = responder(failure, ok())
    with pytest.raises(GatewayAnswerLost) as info:
        await make_http(handler).request("POST", "/create", json_body={}, retry=False)
    assert len(seen) == 1
    assert isinstance(info.value, GatewayUnavailable) and info.value.retryable


async def test_create_with_lookup_finds_the_session_after_a_lost_answer() -> None:
    creates: list[int] = []
    lookups: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            creates.append(1)
            raise httpx.ReadTimeout("answer lost")
        lookups.append(1)
        return ok({"id": "s1"})

    http = make_http(handle)

    async def create() -> Any:
        return await http.request("POST", "/sessions", json_body={}, retry=False)

    async def lookup() -> Any:
        return await http.request("GET", "/sessions/by-reference/r1")

    assert await http.create_with_lookup("r1", create, lookup) == {"id": "s1"}
    assert creates == [1] and lookups == [1]


async def test_create_with_lookup_creates_again_only_when_nothing_was_found() -> None:
    state = {"creates": 0, "exists": False}
    sleeps = Sleeps()

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            state["creates"] += 1
            if state["creates"] == 1:
                return httpx.Response(503)  # rejected before anything was stored
            state["exists"] = True
            return httpx.Response(201, json={"id": "s2"})
        if state["exists"]:
            return ok({"id": "s2"})
        return httpx.Response(404, json={"message": "Payment session not found"})

    http = make_http(handle, sleeps=sleeps)

    async def create() -> Any:
        return await http.request("POST", "/sessions", json_body={}, retry=False)

    async def lookup() -> Any:
        try:
            return await http.request("GET", "/sessions/by-reference/r2")
        except GatewayNotFound:
            return None

    assert await http.create_with_lookup("r2", create, lookup) == {"id": "s2"}
    assert state["creates"] == 2
    assert len(sleeps.calls) == 1


async def test_an_uncertain_reference_is_looked_up_before_creating_again() -> None:
    state = {"creates": 0, "lookups_fail": True}

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            state["creates"] += 1
            return httpx.Response(502, text="<html/>")  # created, answer lost
        if state["lookups_fail"]:
            return httpx.Response(503)
        return ok({"id": "s3"})

    http = make_http(handle, max_retries=1)

    async def create() -> Any:
        return await http.request("POST", "/sessions", json_body={}, retry=False)

    async def lookup() -> Any:
        return await http.request("GET", "/sessions/by-reference/r3")

    with pytest.raises(GatewayUnavailable):
        await http.create_with_lookup("r3", create, lookup)
    assert state["creates"] == 1
    state["lookups_fail"] = False
    assert await http.create_with_lookup("r3", create, lookup) == {"id": "s3"}
    assert state["creates"] == 1  # found by reference, not created again


# -- body checks, budget, credentials ---------------------------------------------------------
def mixpay_check(failure: HttpFailure) -> GatewayError | None:
    body = failure.body
    if isinstance(body, dict) and body.get("code") == 1429:
        return GatewayRateLimited("rate", gateway="mixpay", retry_after=failure.retry_after)
    return None


async def test_body_rate_limit_under_http_200_is_retried_with_retry_after() -> None:
    limited = httpx.Response(200, json={"code": 1429, "success": False, "data": []},
                             headers={"Retry-After": "4"})
    handler, seen = responder(limited, ok({"code": 0, "data": {}}))
    sleeps = Sleeps()
    http = make_http(handler, sleeps=sleeps, check_body=mixpay_check)
    assert await http.request("GET", "/payments_result") == {"code": 0, "data": {}}
    assert sleeps.calls == [4.0] and len(seen) == 2


async def test_every_attempt_acquires_the_budget() -> None:
    clock = [0.0]

    async def budget_sleep(seconds: float) -> None:
        clock[0] += seconds

    budget = RequestBudget(30, clock=lambda: clock[0], sleep=budget_sleep)
    handler, seen = responder(httpx.Response(500), httpx.Response(500), ok())
    http = make_http(handler, budget=budget)
    await http.request("GET", "/payments_result")
    assert budget.granted == 3 == len(seen)
    assert clock[0] == pytest.approx(4.0)  # two waits of 2 s (60 / 30)


async def test_credentials_only_in_headers_and_redacted_from_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    handler, seen = responder(
        httpx.Response(500, json={"message": f"boom {SECRET}"}),
        httpx.Response(400, json={"message": f"key {SECRET} is not valid here"}),
    )
    with pytest.raises(GatewayRejected) as info:
        await make_http(handler).request("GET", "/status", params={"id": "1"})
    assert seen[0].headers["x-api-key"] == SECRET
    assert SECRET not in str(seen[0].url)
    for text in (str(info.value), info.value.user_message, repr(info.value.args)):
        assert SECRET not in text
    assert "***" in info.value.user_message
    assert SECRET not in caplog.text


async def test_injected_client_is_used_and_base_url_joined() -> None:
    handler, seen = responder(ok())
    http = make_http(handler)
    await http.request("GET", "/payment-sessions/abc/status")
    await http.request("GET", "https://other.example/_sim/x")
    assert str(seen[0].url) == "https://gw.example/api/payment-sessions/abc/status"
    assert str(seen[1].url) == "https://other.example/_sim/x"


# -- budget -----------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def test_budget_interval() -> None:
    assert RequestBudget(60).interval == 1.0
    assert RequestBudget(50).interval == 1.2
    with pytest.raises(ValueError):
        RequestBudget(0)


async def test_budget_never_exceeds_per_minute_in_any_window() -> None:
    clock = FakeClock()
    budget = RequestBudget(50, clock=clock, sleep=clock.sleep)
    granted: list[float] = []

    async def one() -> None:
        await budget.acquire()
        granted.append(clock())

    await asyncio.gather(*(one() for _ in range(500)))
    assert len(granted) == 500
    assert granted == sorted(granted)
    for i in range(len(granted) - 1):
        assert granted[i + 1] - granted[i] >= budget.interval - 1e-9
    for i in range(len(granted) - 50):
        assert granted[i + 50] - granted[i] > 60.0
    assert budget.granted == 500


async def test_budget_does_not_wait_when_idle() -> None:
    clock = FakeClock()
    budget = RequestBudget(10, clock=clock, sleep=clock.sleep)
    await budget.acquire()
    clock.now += 100
    await budget.acquire()
    assert clock.slept == []
    assert budget.delay() == pytest.approx(6.0)


# -- exact money and time helpers -------------------------------------------------------------
def test_decimal_helpers_are_exact() -> None:
    assert decimal_text(decimal_from_minor(1000)) == "10"
    assert decimal_text(decimal_from_minor(1250)) == "12.5"
    assert decimal_text(decimal_from_minor(1234)) == "12.34"
    assert decimal_text(decimal_from_minor(5)) == "0.05"
    assert decimal_text(decimal_from_minor(100000000)) == "1000000"
    assert decimal_text(Decimal("0.00025836")) == "0.00025836"
    assert minor_from_text("12.5") == 1250
    assert minor_from_text("10") == 1000
    assert minor_from_text(10) == 1000
    assert minor_from_text("0.001") is None
    assert minor_from_text(12.5) is None  # never a float
    assert minor_from_text("abc") is None and minor_from_text(None) is None
    with pytest.raises(TypeError):
        decimal_from_minor(12.5)  # type: ignore[arg-type]


def test_time_helpers() -> None:
    assert parse_time("2019-08-24T14:15:22Z") == datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)
    assert parse_time("2025-01-29T14:30:00.000Z") == datetime(2025, 1, 29, 14, 30, tzinfo=UTC)
    assert parse_time(1647179141) == datetime.fromtimestamp(1647179141, UTC)
    assert parse_time("1647179141") == datetime.fromtimestamp(1647179141, UTC)
    junk: list[Any] = [None, "", "yesterday", 0, True, [], {}]
    for value in junk:
        assert parse_time(value) is None
    assert iso_z(NOW + timedelta(microseconds=5)) == "2026-11-21T22:00:00Z"


# -- adapters over the mock transport ---------------------------------------------------------
async def test_mion_status_rules() -> None:
    cases: list[tuple[dict[str, Any], PaymentState]] = [
        ({"status": "funded", "paidAt": "2026-11-21T21:00:00Z"}, PaymentState.PAID),
        ({"status": "funding-received", "paidAt": "2026-11-21T21:00:00Z"}, PaymentState.PAID),
        ({"status": "funded", "paidAt": None}, PaymentState.PENDING),
        ({"status": "created", "paidAt": "2026-11-21T21:00:00Z"}, PaymentState.PENDING),
        ({"status": "created", "paidAt": None, "expiresAt": "2026-11-21T23:00:00Z"},
         PaymentState.PENDING),
        ({"status": "created", "paidAt": None, "expiresAt": "2026-11-21T21:59:59Z"},
         PaymentState.EXPIRED),
        ({"status": "whatever-new", "paidAt": None}, PaymentState.PENDING),
    ]
    for body, expected in cases:
        handler, _ = responder(ok({"paymentSessionId": "s", **body}))
        gateway = MionGateway(
            httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            api_url="https://mion.example", api_key=SECRET, now=lambda: NOW,
        )
        status = await gateway.get_status("s", "tillbot-1")
        assert status.state == expected, body
        assert status.raw_status == body["status"]


async def test_mixpay_error_codes() -> None:
    def envelope(code: int, message: str = "m", http: int = 200) -> httpx.Response:
        return httpx.Response(
            http, json={"code": code, "success": False, "message": message, "data": []}
        )

    expectations: list[tuple[httpx.Response, type[GatewayError]]] = [
        (envelope(10001, "User does not exist.", 400), GatewayAuthError),
        (envelope(10001, "User does not exist."), GatewayAuthError),
        (envelope(1017, "Parameter error.", 400), GatewayRejected),
        (envelope(10003, "Does not support this quote asset."), GatewayRejected),
        (envelope(-1, "Server error", 200), GatewayUnavailable),
        (envelope(10008, "maintenance", 200), GatewayUnavailable),
        (httpx.Response(200, json={"no": "envelope"}), GatewayUnavailable),
    ]
    for response, error in expectations:
        handler, _ = responder(response)
        gateway = MixPayGateway(
            httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            payee_id="p", settlement_asset_id="a", max_retries=0,
            budget=RequestBudget(60, clock=lambda: 0.0, sleep=Sleeps()),
        )
        with pytest.raises(error):
            await gateway.renew_attempt("trace")


async def test_mixpay_sends_json_with_string_amounts() -> None:
    handler, seen = responder(ok({"code": 0, "success": True, "data": {"code": "c0de"}}))
    clock = FakeClock()
    gateway = MixPayGateway(
        httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        payee_id="p", settlement_asset_id="a", now=lambda: NOW,
        budget=RequestBudget(60, clock=clock, sleep=clock.sleep),
    )
    session = await gateway.create_session(SessionRequest(
        reference="tillbot-42", amount_minor=1000, currency="USD", description="Tea",
        kind=InvoiceKind.CHECKOUT, expires_in=timedelta(minutes=30),
    ))
    body = json.loads(seen[0].content)
    assert body["quoteAmount"] == "10" and body["orderId"] == "tillbot-42"
    assert body["expiredTimestamp"] == int((NOW + timedelta(minutes=30)).timestamp())
    assert session.checkout_url == "https://mixpay.me/code/c0de"
    assert str(seen[0].url) == "https://api.mixpay.me/v1/one_time_payment"


async def test_callback_reads_take_only_spare_budget() -> None:
    """Issue 17: callback re-reads never queue, never take more than their share of a
    window, and never take the reserve that creating invoices needs."""
    clock = FakeClock()
    budget = RequestBudget(50, clock=clock, sleep=clock.sleep)
    assert (budget.callback_limit, budget.spare_limit) == (10, 40)
    granted = deferred = 0
    for _ in range(50):  # a callback every 1.2 s for a minute: 10 fit the callbacks' share
        with callback_requests():
            try:
                await budget.acquire()
                granted += 1
            except BudgetDeferred as exc:
                assert not exc.retryable
                deferred += 1
        clock.now += budget.interval
    assert (granted, deferred) == (10, 40)
    # Creating is never deferred: outside callback_requests() everything waits its turn.
    await budget.acquire()
    # With other requests queued, a callback does not join the queue.
    fresh = RequestBudget(50, clock=clock, sleep=clock.sleep)
    async with fresh._lock:
        with callback_requests(), pytest.raises(BudgetDeferred):
            await fresh.acquire()
    # A window already 80 % used (polls) leaves nothing to callbacks: the rest is creating's.
    busy = RequestBudget(50, clock=clock, sleep=clock.sleep)
    for _ in range(40):
        await busy.acquire()
    with callback_requests(), pytest.raises(BudgetDeferred):
        await busy.acquire()
    assert busy.callback_deferred == 1
