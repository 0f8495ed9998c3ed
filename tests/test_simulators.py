"""The gateway simulators, exercised with raw httpx over HTTP (their wire formats)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiohttp import web

from bot.gateways.bolt11 import _hrp_expand, _polymod
from testkit.gateway_base import InvalidTransition, UnsupportedControl
from testkit.mion import MionSimulator
from testkit.miraclepay import MiraclePaySimulator
from testkit.mixpay import BTC, STATUSES, MixPaySimulator
from testkit.tls import server_context

MION_KEY = "mion-test-key"
PAYEE = "payee-0001"
SETTLE = "4d8c508b-91c5-375b-92b0-ee702ed2dac5"


class FakeClock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **kw: float) -> None:
        self.moment += timedelta(**kw)


class Receiver:
    """A tiny aiohttp server recording the callbacks it gets."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.answers: list[tuple[int, Any]] = []  # consumed first; then 200 {"code": "SUCCESS"}
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        status, body = self.answers.pop(0) if self.answers else (200, {"code": "SUCCESS"})
        return web.json_response(body, status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/cb", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=server_context())
        await site.start()
        self.url = f"https://127.0.0.1:{self.runner.addresses[0][1]}/cb"  # MixPay: HTTPS only

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


async def eventually(check: Any, within: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as c:
        yield c


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def mion() -> AsyncIterator[MionSimulator]:
    sim = MionSimulator(api_key=MION_KEY, funded_after=timedelta(seconds=0.1))
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def mixpay() -> AsyncIterator[MixPaySimulator]:
    sim = MixPaySimulator(payee_id=PAYEE, callback_retry_delays=(0, 0.05, 0.05))
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def miracle() -> AsyncIterator[MiraclePaySimulator]:
    sim = MiraclePaySimulator(
        client_id="cid", api_key="akey", active_blockchains={"btc", "eth"},
        redirect_domains={"shop.example.com"},
    )
    await sim.start()
    yield sim
    await sim.stop()


def mion_body(**over: Any) -> dict[str, Any]:
    expiry = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body: dict[str, Any] = {
        "amount": 1200, "currencyIso3": "EUR", "expiry": expiry, "reference": "inv-1",
        "retailPos": False,
    }
    body.update(over)
    return body


H = {"x-api-key": MION_KEY}

# -- Mion ---------------------------------------------------------------------------------------


async def test_mion_create_status_pay_funded(
    mion: MionSimulator, client: httpx.AsyncClient
) -> None:
    assert mion.url == mion.root_url
    r = await client.post(f"{mion.url}/payment-sessions", json=mion_body(), headers=H)
    assert r.status_code == 201, r.text
    session = r.json()
    sid = session["paymentSessionId"]
    assert session["amount"] == 1200 and session["currencyIso3"] == "EUR"
    assert session["checkoutUrl"] == f"https://app.mion.group/checkout/{sid}"
    assert session["expiresAt"].endswith("Z") and session["paidAt"] is None

    r = await client.get(f"{mion.url}/payment-sessions/{sid}/status", headers=H)
    status = r.json()
    assert set(status) == {
        "expiresAt", "feeStatus", "fundingAmountAvailable", "fundingStatus", "paidAt",
        "paymentMethod", "paymentSessionId", "refundSessionIds", "status",
    }
    assert status["status"] == "created" and status["paidAt"] is None
    assert (await client.get(f"{mion.url}/payment-sessions/{sid}", headers=H)).json()[
        "reference"] == "inv-1"
    by_ref = await client.get(f"{mion.url}/payment-sessions/by-reference/inv-1", headers=H)
    assert by_ref.json()["paymentSessionId"] == sid

    r = await client.post(f"{mion.root_url}/_sim/sessions/{sid}/pay")
    assert r.status_code == 200 and r.json()["session"]["status"] == "funding-received"
    status = (await client.get(f"{mion.url}/payment-sessions/{sid}/status", headers=H)).json()
    assert status["status"] == "funding-received" and status["paidAt"].endswith("Z")
    assert status["fundingStatus"] == "well-funded" and status["feeStatus"] == "correct"
    await asyncio.sleep(0.2)
    status = (await client.get(f"{mion.url}/payment-sessions/{sid}/status", headers=H)).json()
    assert status["status"] == "funded"
    assert mion.sessions[sid].create_requests == 1 and mion.create_count == 1


async def test_mion_auth_and_validation_errors(
    mion: MionSimulator, client: httpx.AsyncClient
) -> None:
    url = f"{mion.url}/payment-sessions"
    for headers in ({}, {"x-api-key": "wrong"}):
        r = await client.post(url, json=mion_body(), headers=headers)
        assert r.status_code == 401 and r.json() == {"message": "Invalid API key"}
    assert (await client.get(f"{url}/x/status")).status_code == 401
    for amount in (12.5, "1200", 0, -5, True):
        r = await client.post(url, json=mion_body(amount=amount), headers=H)
        assert r.status_code == 400 and "message" in r.json(), amount
    r = await client.post(url, json=mion_body(currencyIso3="USD"), headers=H)
    assert r.status_code == 400 and r.json() == {"message": "Currency not supported"}
    r = await client.post(url, json=mion_body(expiry="soon"), headers=H)
    assert r.status_code == 400
    r = await client.post(url, json=mion_body(expiry="2020-01-01T00:00:00Z"), headers=H)
    assert r.status_code == 400
    # Strict: only the assumed expiry format (ISO 8601) is taken; seconds or Unix time are not.
    for other in (600, "600", 1_900_000_000, 12.5, True):
        r = await client.post(url, json=mion_body(expiry=other, reference="secs"), headers=H)
        assert r.status_code == 400 and "ISO-8601" in r.json()["message"], other
    r = await client.post(url, json=mion_body(reference="secs"), headers=H)
    assert r.status_code == 201
    assert mion.sessions[r.json()["paymentSessionId"]].expires_at is not None
    r = await client.post(url, json=mion_body(reference="secs"), headers=H)
    assert r.status_code == 409 and "message" in r.json()
    r = await client.get(f"{url}/nope/status", headers=H)
    assert r.status_code == 404 and r.json()["message"]
    r = await client.get(f"{url}/by-reference/nope", headers=H)
    assert r.status_code == 404
    r = await client.post(url, content=b"{not json", headers=H)
    assert r.status_code == 400
    assert mion.create_count == 1


async def test_mion_sandbox_accepts_any_currency(client: httpx.AsyncClient) -> None:
    async with MionSimulator(api_key="k", currencies=None, checkout_base=None) as sim:
        r = await client.post(
            f"{sim.url}/payment-sessions", json=mion_body(currencyIso3="USD"),
            headers={"x-api-key": "k"},
        )
        assert r.status_code == 201
        sid = r.json()["paymentSessionId"]
        assert r.json()["checkoutUrl"] == f"{sim.root_url}/checkout/{sid}"
        page = await client.get(r.json()["checkoutUrl"])
        assert page.status_code == 200 and f"/_sim/sessions/{sid}/pay" in page.text
        paid = await client.post(
            f"{sim.root_url}/_sim/sessions/{sid}/pay", data={"return_to": f"/checkout/{sid}"},
            follow_redirects=False,
        )
        assert paid.status_code == 303 and paid.headers["location"] == f"/checkout/{sid}"
        assert sim.sessions[sid].paid_at is not None


async def test_mion_pos_attempts_and_expiry(client: httpx.AsyncClient) -> None:
    clock = FakeClock()
    async with MionSimulator(api_key="k", clock=clock, funded_after=None) as sim:
        h = {"x-api-key": "k"}
        body = mion_body(retailPos=True, expiry="2026-01-15T12:15:00Z", reference="pos-1")
        sid = (await client.post(f"{sim.url}/payment-sessions", json=body, headers=h)).json()[
            "paymentSessionId"]
        url = f"{sim.url}/payment-sessions/{sid}/payment-attempts"
        r = await client.post(url, json={"paymentMethod": "lightning", "retailPos": True}, headers=h)
        assert r.status_code == 201, r.text
        attempt = r.json()
        assert attempt["amountMsat"] == 20_000_000  # 12.00 EUR at 60000 EUR/BTC
        assert attempt["expiry"] == "2026-01-15T12:02:00Z"
        assert attempt["lnInvoice"].startswith("lnbc200u1")
        assert attempt["lnInvoice"] == attempt["lnInvoice"].lower()
        hrp, _, data = attempt["lnInvoice"].rpartition("1")
        charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
        assert _polymod(_hrp_expand(hrp) + [charset.index(c) for c in data]) == 1  # bech32
        assert attempt["paymentSessionId"] == sid and attempt["blockedByCompliance"] is False
        assert attempt["missingComplianceCustomerFields"] == []
        assert attempt["onChainAddress"].startswith("bc1q")
        assert attempt["paymentMethod"] == "lightning"
        assert isinstance(attempt["suggestedFeeRate"], int)
        bad = await client.post(url, json={"paymentMethod": "lightning"}, headers=h)
        assert bad.status_code == 400

        clock.advance(seconds=121)
        with pytest.raises(InvalidTransition):
            sim.pay(sid)
        r = await client.post(f"{sim.root_url}/_sim/sessions/{sid}/pay")
        assert r.status_code == 409
        again = (await client.post(url, json={"paymentMethod": "lightning", "retailPos": True},
                                   headers=h)).json()
        assert again["lnInvoice"] != attempt["lnInvoice"]
        sim.pay(sid)
        status = (await client.get(f"{sim.url}/payment-sessions/{sid}/status", headers=h)).json()
        assert status["status"] == "funding-received"
        assert status["paidAt"] == "2026-01-15T12:02:01Z"
        assert (await client.post(url, json={"paymentMethod": "lightning", "retailPos": True},
                                  headers=h)).status_code == 409

        other = (await client.post(
            f"{sim.url}/payment-sessions",
            json=mion_body(expiry="2026-01-15T12:05:00Z", reference="online-1"), headers=h,
        )).json()["paymentSessionId"]
        clock.advance(minutes=5)
        status = (await client.get(f"{sim.url}/payment-sessions/{other}/status", headers=h)).json()
        assert status["status"] == "expired" and status["paidAt"] is None
        with pytest.raises(InvalidTransition):
            sim.pay(other)
        assert sim.pay(other, force=True).paid_at is not None
        with pytest.raises(UnsupportedControl):
            sim.underpay(other)


async def test_mion_takes_one_expiry_format_the_configured_one(
    client: httpx.AsyncClient,
) -> None:
    """Strict: a simulator set to another assumed format refuses the ISO timestamp."""
    async with MionSimulator(api_key="k", expiry_format="seconds") as sim:
        url, h = f"{sim.url}/payment-sessions", {"x-api-key": "k"}
        r = await client.post(url, json=mion_body(), headers=h)
        assert r.status_code == 400 and r.json()["message"] == "Invalid expiry: expected seconds"
        r = await client.post(url, json=mion_body(expiry=600), headers=h)
        assert r.status_code == 201, r.text
    async with MionSimulator(api_key="k", expiry_format="unix") as sim:
        url = f"{sim.url}/payment-sessions"
        assert (await client.post(url, json=mion_body(expiry=600), headers=h)).status_code == 400
        later = int(datetime.now(UTC).timestamp()) + 600
        assert (await client.post(url, json=mion_body(expiry=later), headers=h)).status_code == 201
    with pytest.raises(ValueError):
        MionSimulator(expiry_format="rfc2822")


async def test_mion_documented_variants_over_sim_controls(
    mion: MionSimulator, client: httpx.AsyncClient
) -> None:
    """blockedByCompliance, fundingStatus/fundingAmountAvailable, 404 for a while and list
    answers from lookup by reference: each produced through /_sim."""
    root = mion.root_url
    pos = (await client.post(
        f"{mion.url}/payment-sessions", json=mion_body(retailPos=True, reference="pos-c"),
        headers=H,
    )).json()["paymentSessionId"]
    r = await client.post(f"{root}/_sim/sessions/{pos}/compliance",
                          json={"fields": "firstName,dateOfBirth"})
    assert r.status_code == 200, r.text
    attempts = f"{mion.url}/payment-sessions/{pos}/payment-attempts"
    body = {"paymentMethod": "lightning", "retailPos": True}
    attempt = (await client.post(attempts, json=body, headers=H)).json()
    assert attempt["blockedByCompliance"] is True and attempt["lnInvoice"] is None
    assert attempt["missingComplianceCustomerFields"] == ["firstName", "dateOfBirth"]
    await client.post(f"{root}/_sim/sessions/{pos}/compliance", json={"fields": ""})
    attempt = (await client.post(attempts, json=body, headers=H)).json()
    assert attempt["blockedByCompliance"] is False and attempt["lnInvoice"]

    sid = (await client.post(f"{mion.url}/payment-sessions", json=mion_body(), headers=H)).json()[
        "paymentSessionId"]
    r = await client.post(f"{root}/_sim/sessions/{sid}/funding",
                          json={"status": "under-funded", "available": 600})
    assert r.status_code == 200
    status = (await client.get(f"{mion.url}/payment-sessions/{sid}/status", headers=H)).json()
    assert status["fundingStatus"] == "under-funded" and status["fundingAmountAvailable"] == 600
    assert (await client.post(f"{root}/_sim/sessions/{sid}/funding", json={})).status_code == 400

    await client.post(f"{root}/_sim/sessions/{sid}/vanish", json={"seconds": 0.3})
    for path in (f"/payment-sessions/{sid}/status", "/payment-sessions/by-reference/inv-1"):
        r = await client.get(f"{mion.url}{path}", headers=H)
        assert r.status_code == 404 and r.json() == {"message": "Payment session not found"}
    await asyncio.sleep(0.35)
    assert (await client.get(f"{mion.url}/payment-sessions/{sid}/status",
                             headers=H)).status_code == 200

    by_ref = f"{mion.url}/payment-sessions/by-reference"
    assert (await client.post(f"{root}/_sim/lookup", json={"mode": "list"})).status_code == 200
    listed = (await client.get(f"{by_ref}/inv-1", headers=H)).json()
    assert [s["paymentSessionId"] for s in listed] == [sid]
    nothing = await client.get(f"{by_ref}/nobody", headers=H)
    assert nothing.status_code == 200 and nothing.json() == []
    await client.post(f"{root}/_sim/lookup", json={"mode": "list-all"})
    everyone = (await client.get(f"{by_ref}/nobody", headers=H)).json()
    assert {s["reference"] for s in everyone} == {"pos-c", "inv-1"}
    assert (await client.post(f"{root}/_sim/lookup", json={"mode": "x"})).status_code == 400


async def test_mion_webhook_delivers_status_changes(
    mion: MionSimulator, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    r = await client.post(f"{mion.url}/payment-sessions", json=mion_body(), headers=H)
    sid = r.json()["paymentSessionId"]
    r = await client.post(
        f"{mion.url}/payment-sessions/{sid}/webhooks", json={"url": receiver.url}, headers=H
    )
    assert r.status_code == 201
    receiver.answers.append((500, {}))  # the first try fails, the retry succeeds
    mion.pay(sid)
    await eventually(lambda: len(mion.callbacks_sent) == 2)
    statuses = [body["status"] for body in receiver.received]
    assert statuses.count("funding-received") == 2 and "funded" in statuses
    assert all(body["paymentSessionId"] == sid for body in receiver.received)
    assert {c.payload["status"] for c in mion.callbacks_sent} == {"funding-received", "funded"}


# -- faults -------------------------------------------------------------------------------------


async def test_fail_next_and_retry_after(mion: MionSimulator, client: httpx.AsyncClient) -> None:
    url = f"{mion.url}/payment-sessions"
    mion.fail_next(1)
    r = await client.post(url, json=mion_body(), headers=H)
    assert r.status_code == 500 and "message" in r.json()
    assert mion.create_count == 0
    mion.fail_next(1, status=429, retry_after=2)
    r = await client.post(url, json=mion_body(), headers=H)
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    mion.fail_next(1, status=503, body={"message": "down"}, path_contains="/status")
    r = await client.post(url, json=mion_body(), headers=H)
    assert r.status_code == 201
    sid = r.json()["paymentSessionId"]
    r = await client.get(f"{url}/{sid}/status", headers=H)
    assert r.status_code == 503 and r.json() == {"message": "down"}
    assert (await client.get(f"{url}/{sid}/status", headers=H)).status_code == 200
    assert [q.response_status for q in mion.requests] == [500, 429, 201, 503, 200]
    assert mion.requests[0].parsed["amount"] == 1200
    assert mion.requests[0].headers["x-api-key"] == MION_KEY


async def test_hang_malformed_and_delay(mion: MionSimulator, client: httpx.AsyncClient) -> None:
    url = f"{mion.url}/payment-sessions/by-reference/none"
    mion.hang_next(1, seconds=0.5)
    with pytest.raises(httpx.ReadTimeout):
        await client.get(url, headers=H, timeout=0.1)
    assert (await client.get(url, headers=H)).status_code == 404
    mion.malformed_next(1)
    r = await client.get(url, headers=H)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        r.json()
    mion.delay = 0.2
    start = asyncio.get_running_loop().time()
    assert (await client.get(url, headers=H)).status_code == 404
    assert asyncio.get_running_loop().time() - start >= 0.2


async def test_lose_next_create_leaves_exactly_one_session(
    mion: MionSimulator, client: httpx.AsyncClient
) -> None:
    url = f"{mion.url}/payment-sessions"
    mion.lose_next_create(1)
    r = await client.post(url, json=mion_body(reference="lost-1"), headers=H)
    assert r.status_code == 502
    found = await client.get(f"{url}/by-reference/lost-1", headers=H)
    assert found.status_code == 200
    r = await client.post(url, json=mion_body(reference="lost-1"), headers=H)
    assert r.status_code == 409  # the retry must not make a second session
    mion.lose_next_create(1, mode="abort")
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(url, json=mion_body(reference="lost-2"), headers=H)
    assert (await client.get(f"{url}/by-reference/lost-2", headers=H)).status_code == 200
    assert mion.create_count == 2 and len(mion.sessions) == 2


async def test_http_controls(mion: MionSimulator, client: httpx.AsyncClient) -> None:
    root = mion.root_url
    r = await client.post(f"{root}/_sim/faults", json={"kind": "fail", "n": 2, "status": 500})
    assert r.status_code == 200
    for _ in range(2):
        assert (await client.post(f"{mion.url}/payment-sessions", json=mion_body(),
                                  headers=H)).status_code == 500
    await client.post(f"{root}/_sim/faults", json={"kind": "lose_create", "n": 1})
    assert (await client.post(f"{mion.url}/payment-sessions", json=mion_body(),
                              headers=H)).status_code == 502
    sessions = (await client.get(f"{root}/_sim/sessions")).json()
    assert sessions["create_count"] == 1 and len(sessions["sessions"]) == 1
    (sid, state), = sessions["sessions"].items()
    assert state["reference"] == "inv-1" and state["status"] == "created"
    assert (await client.post(f"{root}/_sim/sessions/{sid}/cancel")).json()["session"][
        "status"] == "cancelled"
    assert (await client.post(f"{root}/_sim/sessions/nope/pay")).status_code == 404
    requests = (await client.get(f"{root}/_sim/requests")).json()["requests"]
    assert [q["response_status"] for q in requests] == [500, 500, 502]
    await client.post(f"{root}/_sim/faults", json={"kind": "hang", "n": 1, "seconds": 0.01})
    await client.post(f"{root}/_sim/faults", json={"kind": "malformed", "n": 1})
    assert len(mion.faults) == 2
    assert (await client.post(f"{root}/_sim/faults", json={"kind": "boom"})).status_code == 400
    r = await client.post(f"{root}/_sim/callbacks", json={"enabled": False})
    assert r.json()["enabled"] is False and not mion.callbacks_enabled
    assert (await client.get(f"{root}/_sim/callbacks")).json()["sent"] == []
    assert (await client.post(f"{root}/_sim/reset")).json() == {"ok": True}
    assert mion.sessions == {} and mion.requests == [] and mion.faults == []


# -- MixPay -------------------------------------------------------------------------------------


def otp(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "payeeId": PAYEE, "quoteAmount": "10.50", "quoteAssetId": "usd",
        "settlementAssetId": SETTLE, "orderId": "order-0001",
    }
    body.update(over)
    return body


async def test_mixpay_create_pay_result_and_callback(
    mixpay: MixPaySimulator, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    assert mixpay.url.endswith("/v1")
    r = await client.post(f"{mixpay.url}/one_time_payment", data=otp(callbackUrl=receiver.url))
    body = r.json()
    assert r.status_code == 200 and body["code"] == 0 and body["success"] is True
    assert body["message"] == "" and isinstance(body["timestampMs"], int)
    code = body["data"]["code"]
    assert r.headers["x-ratelimit-limit"] == "60"
    # the same order again (JSON this time): the same payment, never a second one
    r = await client.post(f"{mixpay.url}/one_time_payment", json=otp())
    assert r.json()["data"]["code"] == code
    assert mixpay.create_count == 1 and mixpay.sessions[code].create_requests == 2

    params = {"orderId": "order-0001", "payeeId": PAYEE}
    data = (await client.get(f"{mixpay.url}/payments_result", params=params)).json()["data"]
    assert data["status"] == "unpaid" and data["failureCode"] == "0"
    assert data["quoteAmount"] == "10.50" and data["quoteAssetId"] == "usd"
    assert data["payeeId"] == PAYEE and data["traceId"] == code

    mixpay.pay("order-0001")
    data = (await client.get(f"{mixpay.url}/payments_result", params={"traceId": code})).json()[
        "data"]
    assert data["status"] == "success" and data["failureCode"] == "0"
    assert data["quoteAmount"] == "10.50" and data["paymentAmount"] == "10.5"
    assert data["paymentSymbol"] == "USDT" and data["txid"] and data["settleStatus"] == "success"
    for key in ("blockExplorerUrl", "date", "surplusAmount", "failureReason"):
        assert key in data
    await eventually(lambda: len(mixpay.callbacks_sent) == 1)
    assert receiver.received == [{"orderId": "order-0001", "traceId": code, "payeeId": PAYEE}]


async def test_mixpay_callback_retries_until_success(
    mixpay: MixPaySimulator, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    r = await client.post(f"{mixpay.url}/one_time_payment", json=otp(callbackUrl=receiver.url))
    code = r.json()["data"]["code"]
    receiver.answers += [(200, {"code": "FAIL"}), (500, {})]
    mixpay.fail(code, reason=40020)
    await mixpay.wait_callbacks()
    assert len(receiver.received) == 3 and len(mixpay.callbacks_sent) == 1
    assert [a.delivered for a in mixpay.callback_attempts] == [False, False, True]
    data = (await client.get(f"{mixpay.url}/payments_result", params={"traceId": code})).json()[
        "data"]
    assert data["status"] == "failed" and data["failureCode"] == "40020"
    assert data["failureReason"] == "Wrong asset paid"
    mixpay.callbacks_enabled = False
    r = await client.post(f"{mixpay.url}/one_time_payment",
                          json=otp(orderId="order-0002", callbackUrl=receiver.url))
    mixpay.pay(r.json()["data"]["code"])
    await mixpay.wait_callbacks()
    assert len(receiver.received) == 3 and len(mixpay.callbacks_dropped) == 1


async def test_mixpay_errors(client: httpx.AsyncClient) -> None:
    clock = FakeClock()
    async with MixPaySimulator(payee_id=PAYEE, clock=clock) as sim:
        now = int(clock().timestamp())

        async def create(**over: Any) -> dict[str, Any]:
            r = await client.post(f"{sim.url}/one_time_payment", data=otp(**over))
            body: dict[str, Any] = r.json()
            assert body["success"] is (body["code"] == 0)
            return body

        assert (await create(orderId="abc"))["code"] == 1017
        assert (await create(orderId="has space!"))["code"] == 1017
        assert (await create(quoteAssetId="USD"))["code"] == 10003
        assert (await create(payeeId="someone-else"))["code"] == 10001
        assert (await create(remark="x" * 51))["code"] == 1017
        assert (await create(callbackUrl="http://example.com/cb"))["code"] == 1017
        assert (await create(callbackEvent="bogus"))["code"] == 10131
        assert (await create(expiredTimestamp=now + 5))["code"] == 10063
        assert (await create(expiredTimestamp=now + 2880 * 60))["code"] == 10064
        ok = await create(expiredTimestamp=now + 600, callbackUrl="https://example.com/cb",
                          callbackEvent="settle|pending|paid_less")
        assert ok["code"] == 0 and ok["data"]["code"]
        r = await client.get(f"{sim.url}/payments_result",
                             params={"orderId": "missing-1", "payeeId": PAYEE})
        body = r.json()
        assert body["code"] == 10062 and body["success"] is False and body["data"] == []
        assert r.status_code == 404
        clock.advance(seconds=601)
        data = (await client.get(f"{sim.url}/payments_result",
                                 params={"orderId": "order-0001", "payeeId": PAYEE})).json()["data"]
        assert data["status"] == "failed" and data["failureCode"] == "40000"
        assert data["failureReason"] == "Payment overtime"
        assert (await create())["code"] == 10065  # a failed order cannot be recreated


async def test_mixpay_onchain_payment_and_controls(
    mixpay: MixPaySimulator, client: httpx.AsyncClient
) -> None:
    body = otp(orderId="chain-0001", quoteAmount="10", paymentAssetId=BTC, isChain=True)
    r = await client.post(f"{mixpay.url}/payments", json=body)
    data = r.json()["data"]
    assert data["paymentAmount"] == "0.00016667"  # 10 USD at 60000 USD/BTC, rounded up
    assert data["paymentAssetSymbol"] == "BTC" and data["quoteAmount"] == "10"
    assert data["destination"].startswith("bc1") and data["seconds"] == 600
    for key in ("traceId", "expire", "memo", "tag"):
        assert key in data
    trace = data["traceId"]
    r = await client.post(f"{mixpay.url}/payments/refresh", data={"traceId": trace})
    assert r.json()["data"]["traceId"] == trace
    assert (await client.post(f"{mixpay.url}/payments/refresh",
                              data={"traceId": "00000000-0000-0000-0000-000000000000"})
            ).json()["code"] == 10062

    raw = (  # a JSON number keeps its exact text
        b'{"payeeId": "%s", "quoteAmount": 12.50, "quoteAssetId": "eur", '
        b'"settlementAssetId": "%s", "orderId": "json-0001"}' % (PAYEE.encode(), SETTLE.encode())
    )
    r = await client.post(f"{mixpay.url}/one_time_payment", content=raw,
                          headers={"content-type": "application/json"})
    got = (await client.get(f"{mixpay.url}/payments_result",
                            params={"traceId": r.json()["data"]["code"]})).json()["data"]
    assert got["quoteAmount"] == "12.50" and got["payableAmount"] == "13.5"

    mixpay.underpay(trace)
    result = (await client.get(f"{mixpay.url}/payments_result",
                               params={"traceId": trace, "with": "payment"})).json()
    # The newest docs: an underpayment is `pending` with payment.isFullyPaid false.
    assert result["data"]["status"] == "pending"
    assert result["data"]["payment"]["isFullyPaid"] is False
    assert result["data"]["payment"]["isMultiPay"] is True
    assert result["data"]["paymentAmount"] == "0.00008333"
    assert result["data"]["payableAmount"] == "0.00016667"
    mixpay.expire(trace)
    assert mixpay.sessions[trace].failure_code == "40024"
    failed = (await client.get(f"{mixpay.url}/payments_result", params={"traceId": trace})).json()
    assert failed["data"]["paymentAmount"] == "0.00008333"  # what arrived: refund due

    for order, action, code in (("cxl-0001", "cancel", "40032"), ("exp-0001", "expire", "40000")):
        r = await client.post(f"{mixpay.url}/one_time_payment", data=otp(orderId=order))
        sid = r.json()["data"]["code"]
        await client.post(f"{mixpay.root_url}/_sim/sessions/{order}/{action}")
        assert mixpay.sessions[sid].status == "failed" and mixpay.sessions[sid].failure_code == code

    r = await client.post(f"{mixpay.url}/one_time_payment", data=otp(orderId="walk-0001"))
    sid = r.json()["data"]["code"]
    for status in ("pending", "auditing"):
        mixpay.set_status(sid, status)
        got = (await client.get(f"{mixpay.url}/payments_result",
                                params={"traceId": sid, "with": "payment"})).json()["data"]
        assert got["status"] == status and got["payment"]["isFullyPaid"] is True
        assert got["confirmations"] == (1 if status == "pending" else -1)
    mixpay.pay(sid)
    assert mixpay.sessions[sid].status == "success"
    with pytest.raises(InvalidTransition):
        mixpay.pay(sid)


async def test_mixpay_rate_limit(client: httpx.AsyncClient) -> None:
    ticks = [1000.0]
    async with MixPaySimulator(payee_id=PAYEE, rate_limit_time=lambda: ticks[0]) as sim:
        url = f"{sim.url}/payments_result"
        params = {"traceId": "x"}
        for i in range(60):
            r = await client.get(url, params=params)
            assert r.json()["code"] == 10062
            assert r.headers["x-ratelimit-remaining"] == str(59 - i)
        r = await client.get(url, params=params)
        assert r.status_code == 429 and r.json()["code"] == 1429
        assert r.json()["success"] is False
        assert r.headers["x-ratelimit-limit"] == "60"
        assert r.headers["x-ratelimit-remaining"] == "0"
        assert sim.rate_limited_count == 1
        ticks[0] += 60
        assert (await client.get(url, params=params)).json()["code"] == 10062


async def test_mixpay_lost_create_then_lookup(
    mixpay: MixPaySimulator, client: httpx.AsyncClient
) -> None:
    mixpay.lose_next_create(1)
    r = await client.post(f"{mixpay.url}/one_time_payment", data=otp(orderId="lost-0001"))
    assert r.status_code == 502
    r = await client.get(f"{mixpay.url}/payments_result",
                         params={"orderId": "lost-0001", "payeeId": PAYEE})
    assert r.json()["code"] == 0 and r.json()["data"]["status"] == "unpaid"
    again = await client.post(f"{mixpay.url}/one_time_payment", data=otp(orderId="lost-0001"))
    assert again.json()["data"]["code"] == r.json()["data"]["traceId"]
    assert mixpay.create_count == 1
    mixpay.fail_next(1, status=500)
    r = await client.get(f"{mixpay.url}/payments_result", params={"traceId": "x"})
    assert r.status_code == 500 and r.json()["code"] == -1 and r.json()["success"] is False


# -- MiraclePay ---------------------------------------------------------------------------------


def basic(client_id: str = "cid", key: str = "akey") -> dict[str, str]:
    token = base64.b64encode(f"{client_id}:{key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_miraclepay_create_status_pay(
    miracle: MiraclePaySimulator, client: httpx.AsyncClient
) -> None:
    url = f"{miracle.url}/external/payments/prompt"
    raw = b'{"amount": 20.50, "blockchainIds": ["btc", "eth"], "payer": "customer", "note": "n1"}'
    r = await client.post(url, content=raw, headers={**basic(), "content-type": "application/json"})
    assert r.status_code == 201, r.text
    body = r.json(parse_float=Decimal)
    prompt = body["prompt"]
    assert prompt["amount"] == Decimal("21.12") and prompt["commissionAmount"] == "0.62"
    assert prompt["status"] == "pending" and prompt["sessionStatus"] == "pending"
    assert prompt["redirectUrl"] is None
    created = datetime.fromisoformat(prompt["createdAt"])
    assert datetime.fromisoformat(prompt["expiresAt"]) - created == timedelta(hours=24)
    assert body["checkoutUrl"].endswith(prompt["id"])
    assert miracle.sessions[prompt["id"]].amount == Decimal("20.50")

    raw = b'{"amount": 20.505, "blockchainIds": ["btc"], "payer": "customer"}'
    r = await client.post(url, content=raw, headers={**basic(), "content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["statusCode"] == 400 and r.json()["error"] == "Bad Request"
    assert miracle.create_count == 1

    status = (await client.get(f"{url}/{prompt['id']}", headers=basic())).json()
    assert status == {"id": prompt["id"], "blockchainId": None, "status": "pending",
                      "createdAt": prompt["createdAt"]}
    r = await client.post(f"{miracle.root_url}/_sim/sessions/{prompt['id']}/pay",
                          json={"blockchain_id": "eth"})
    assert r.status_code == 200
    status = (await client.get(f"{url}/{prompt['id']}", headers=basic())).json()
    assert status["status"] == "successful" and status["blockchainId"] == "eth"
    with pytest.raises(UnsupportedControl):
        miracle.underpay(prompt["id"])


async def test_miraclepay_commission_example(
    miracle: MiraclePaySimulator, client: httpx.AsyncClient
) -> None:
    url = f"{miracle.url}/external/payments/prompt"
    r = await client.post(url, headers=basic(), json={
        "amount": 100.50, "blockchainIds": ["eth"], "payer": "customer",
        "redirectUrl": "https://shop.example.com/order/12345/complete",
    })
    assert r.status_code == 201
    assert b'"amount": 103.52' in r.content and r.json()["prompt"]["commissionAmount"] == "3.02"
    r = await client.post(url, headers=basic(), json={
        "amount": 100, "blockchainIds": ["eth"], "payer": "merchant"})
    assert r.json()["prompt"]["amount"] == 100


async def test_miraclepay_errors(miracle: MiraclePaySimulator, client: httpx.AsyncClient) -> None:
    url = f"{miracle.url}/external/payments/prompt"
    good = {"amount": 10, "blockchainIds": ["btc"], "payer": "customer"}

    async def expect(status: int, message: str, r: httpx.Response) -> None:
        assert r.status_code == status, r.text
        body = r.json()
        assert body["statusCode"] == status and body["message"] == message
        assert body["error"] == {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}[status]

    await expect(401, "Basic authorization header is required", await client.post(url, json=good))
    await expect(401, "Basic authorization header is required",
                 await client.post(url, json=good, headers={"Authorization": "Bearer x"}))
    await expect(401, "Invalid client ID",
                 await client.post(url, json=good, headers=basic(client_id="other")))
    await expect(401, "Invalid API key", await client.post(url, json=good, headers=basic(key="k")))
    await expect(400, "Missing payment addresses for some blockchains",
                 await client.post(url, json={**good, "blockchainIds": ["btc", "sol"]},
                                   headers=basic()))
    await expect(400, "No payment addresses configured",
                 await client.post(url, json={**good, "blockchainIds": ["sol"]}, headers=basic()))
    await expect(400, "Redirect URL domain not allowed",
                 await client.post(url, json={**good, "redirectUrl": "https://evil.example/x"},
                                   headers=basic()))
    await expect(400, "Invalid redirect URL format",
                 await client.post(url, json={**good, "redirectUrl": "not a url"},
                                   headers=basic()))
    await expect(404, "Payment prompt not found",
                 await client.get(f"{url}/550e8400-e29b-41d4-a716-446655440000", headers=basic()))
    for bad in ({**good, "amount": 0}, {**good, "amount": "10"}, {**good, "payer": "x"},
                {**good, "blockchainIds": []}):
        r = await client.post(url, json=bad, headers=basic())
        assert r.status_code == 400 and r.json()["error"] == "Bad Request"
    active = (await client.get(f"{miracle.url}/external/blockchains/active", headers=basic()))
    assert [c["id"] for c in active.json()] == ["btc", "eth"]
    assert miracle.create_count == 0

    async with MiraclePaySimulator(client_id="cid", api_key="akey", redirect_domains=()) as sim:
        await expect(400, "No redirect domains configured", await client.post(
            f"{sim.url}/external/payments/prompt", headers=basic(),
            json={**good, "redirectUrl": "https://shop.example.com/x"}))


async def test_miraclepay_expiry_and_lost_create(client: httpx.AsyncClient) -> None:
    clock = FakeClock()
    async with MiraclePaySimulator(client_id="cid", api_key="akey", clock=clock) as sim:
        url = f"{sim.url}/external/payments/prompt"
        sim.lose_next_create(1)
        r = await client.post(url, headers=basic(), json={
            "amount": 5, "blockchainIds": ["btc"], "payer": "merchant", "note": "inv-9"})
        assert r.status_code == 502
        assert sim.create_count == 1
        (prompt,) = sim.sessions.values()
        assert prompt.note == "inv-9"
        clock.advance(hours=24)
        status = (await client.get(f"{url}/{prompt.id}", headers=basic())).json()
        assert status["status"] == "expired" and status["blockchainId"] == "btc"


async def test_mixpay_statuses_are_the_documented_ones(
    mixpay: MixPaySimulator, client: httpx.AsyncClient
) -> None:
    """payments-results.md: unpaid, pending (processing), failed, auditing and success; the
    older notes' `confirming` and `paid_less` statuses are not answered any more."""
    assert set(STATUSES) == {"unpaid", "pending", "auditing", "success", "failed"}
    r = await client.post(f"{mixpay.url}/one_time_payment", data=otp(orderId="docs-0001"))
    sid = r.json()["data"]["code"]
    for status in ("confirming", "paid_less"):
        with pytest.raises(ValueError, match="status must be one of"):
            mixpay.set_status(sid, status)


async def test_mixpay_deadline_does_not_fail_a_payment_still_confirming(
    client: httpx.AsyncClient,
) -> None:
    clock = FakeClock()
    async with MixPaySimulator(payee_id=PAYEE, clock=clock) as sim:
        now = int(clock().timestamp())
        r = await client.post(f"{sim.url}/one_time_payment",
                              data=otp(orderId="slow-0001", expiredTimestamp=now + 600))
        sid = r.json()["data"]["code"]
        sim.set_status(sid, "pending")
        clock.advance(seconds=700)
        sim.tick()
        got = (await client.get(f"{sim.url}/payments_result", params={"traceId": sid})).json()
        assert got["data"]["status"] == "pending" and got["data"]["confirmations"] > -1
        sim.pay(sid)
        got = (await client.get(f"{sim.url}/payments_result", params={"traceId": sid})).json()
        assert got["data"]["status"] == "success"


async def test_mixpay_overpayment_and_failure_with_money(
    mixpay: MixPaySimulator, client: httpx.AsyncClient
) -> None:
    body = otp(orderId="over-0001", quoteAmount="10", paymentAssetId=BTC, isChain=True)
    trace = (await client.post(f"{mixpay.url}/payments", json=body)).json()["data"]["traceId"]
    mixpay.pay(trace, amount=Decimal("0.0002"))
    got = (await client.get(f"{mixpay.url}/payments_result", params={"traceId": trace})).json()
    assert got["data"]["status"] == "success"
    assert got["data"]["surplusAmount"] == "0.00003333"
    assert got["data"]["surplusStatus"] == "pending"

    body = otp(orderId="wrong-0001", quoteAmount="10", paymentAssetId=BTC, isChain=True)
    trace = (await client.post(f"{mixpay.url}/payments", json=body)).json()["data"]["traceId"]
    await client.post(f"{mixpay.root_url}/_sim/sessions/{trace}/fail",
                      json={"code": "40020", "paid": "0.0001"})
    got = (await client.get(f"{mixpay.url}/payments_result", params={"traceId": trace})).json()
    assert got["data"]["status"] == "failed" and got["data"]["failureCode"] == "40020"
    assert got["data"]["paymentAmount"] == "0.0001"


async def test_mixpay_refuses_http_callback_urls(
    mixpay: MixPaySimulator, client: httpx.AsyncClient
) -> None:
    r = await client.post(f"{mixpay.url}/one_time_payment",
                          data=otp(orderId="http-0001", callbackUrl="http://127.0.0.1:9/cb"))
    assert r.json()["code"] == 1017 and "HTTPS" in r.json()["message"]
    assert not mixpay.sessions
