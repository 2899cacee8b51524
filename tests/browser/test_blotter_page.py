"""The blotter page in a real browser against a real worker: OMS Avro -> worker -> WebSocket ->
AG Grid in headless Chromium.

A user opens `/blotter`, builds a filter in the page, and watches the grid: matching orders must
appear within a second of being produced, orders that stop matching must disappear, orders that
never matched must never show, an invalid filter must show the server's error, positions must
expand to their lots, and the browser console must stay clean.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest

from app.config import load_settings
from app.producer import OmsProducer
from app.serde import build_serde
from tests.browser.page_driver import PageDriver
from tests.conftest import Worker, await_condition
from web.blotter.client import BlotterClient
from web.page import STATIC_DIR

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BUSINESS_DATE = dt.date(2026, 11, 20)
T0 = dt.datetime(2026, 11, 20, 14, 0, tzinfo=dt.UTC)
LATENCY_BUDGET_S = 1.0
OPEN_NEW = [
    {"field": "symbol", "operator": "equals", "value": "AAPL"},
    {"field": "status", "operator": "in", "value": ["NEW", "PARTIALLY_FILLED"]},
]


def order(order_id: str, sequence: int, symbol: str, status: str, account: str = "ACC-1",
          qty: str = "250.125") -> dict[str, Any]:
    return {
        "eventId": f"E-{order_id}-{sequence}",
        "sequence": sequence,
        "eventTime": T0 + dt.timedelta(seconds=sequence),
        "orderId": order_id,
        "clOrdId": f"CL-{order_id}",
        "account": account,
        "symbol": symbol,
        "side": "BUY",
        "orderType": "LIMIT",
        "timeInForce": "DAY",
        "orderQty": Decimal(qty),
        "price": Decimal("187.3125"),
        "stopPx": None,
        "status": status,
        "cumQty": Decimal(0),
        "leavesQty": Decimal(qty),
        "avgPx": Decimal(0),
        "trader": "alice",
        "desk": "EQ",
        "transactTime": T0,
        "correlationId": None,
        "causationId": None,
        "source": "browser-test",
    }


def trade(trade_id: str, qty: str, price: str, ms: int) -> dict[str, Any]:
    return {
        "eventId": f"E-{trade_id}",
        "sequence": 1,
        "eventTime": T0,
        "tradeId": trade_id,
        "account": "ACC-1",
        "symbol": "AAPL",
        "side": "BUY",
        "quantity": Decimal(qty),
        "price": Decimal(price),
        "tradeTime": T0 + dt.timedelta(milliseconds=ms),
        "effectiveDate": BUSINESS_DATE,
        "contractId": None,
        "correlationId": f"corr-{trade_id}",
        "causationId": None,
        "source": "browser-test",
    }


async def produce(worker: Worker, records: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    """Send (topic attribute, key, record name, value) records and wait for the broker's acks."""
    async with OmsProducer(load_settings(worker.env), build_serde(None)) as producer:
        for topic, key, record, value in records:
            await producer.send_record(topic, key, record, value)
        await producer.flush()


def orders(*specs: tuple[str, int, str, str]) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [("orders", oid, "Order", order(oid, seq, sym, st)) for oid, seq, sym, st in specs]


async def start_worker(deployment: Any, page: PageDriver, **env: str) -> Worker:
    """A ready worker; the browser starts meanwhile (both take seconds on a busy machine)."""
    worker = deployment(BUSINESS_DATE=BUSINESS_DATE.isoformat(), **env)
    worker.start()
    await asyncio.gather(asyncio.to_thread(worker.wait_ready), page.call("launch"))
    return worker


async def test_filtered_orders_and_positions_update_live_in_the_browser(
    browser_installed: None, deployment: Any, tmp_path: Path
) -> None:
    async with PageDriver(tmp_path / "browser.log") as page:
        worker = await start_worker(deployment, page)
        await produce(worker, orders(
            ("ORD-A1", 1, "AAPL", "NEW"),
            ("ORD-A2", 1, "AAPL", "FILLED"),
            ("ORD-M1", 1, "MSFT", "NEW"),
        ))
        opened = await page.open(worker.url + "/blotter")
        assert opened["status"] == "Real-Time Updates: Connected"

        # Unfiltered, the snapshot holds every order.
        shown = await page.wait_rows(["ORD-A1", "ORD-A2", "ORD-M1"], exact=True, timeout_ms=20000)
        assert shown["matched"], shown

        applied = await page.apply_filter(OPEN_NEW)
        assert applied["state"].startswith("Applied"), applied
        shown = await page.wait_rows(["ORD-A1"], exact=True)
        assert shown["matched"], f"filter did not narrow the grid: {shown}"

        # Live: a new matching order, a new non-matching one, and ORD-A1 leaving the filter.
        produced_at = time.time()
        await produce(worker, orders(
            ("ORD-A3", 1, "AAPL", "NEW"),
            ("ORD-M2", 1, "MSFT", "NEW"),
            ("ORD-A1", 2, "AAPL", "FILLED"),
        ))
        shown = await page.wait_rows(["ORD-A3"], ["ORD-A1"], timeout_ms=5000)
        latency = shown["at"] / 1000 - produced_at
        assert shown["matched"], f"the grid did not follow the changes: {shown}"
        assert latency <= LATENCY_BUDGET_S, f"rows took {latency:.3f} s to appear and disappear"

        # ORD-M2 reached the worker's view (a second client sees it) yet never enters the grid.
        async with BlotterClient(worker.url, blotter_id="browser-test-check") as client:
            view = await client.subscribe("all", "Order")
            await await_condition(
                lambda: {"ORD-M2", "ORD-A3"} <= view.rows.keys()
                and view.sequences.get("ORD-A1") == 2,
                10, "the worker's view to hold the new versions",
            )
        shown = await page.wait_rows(["ORD-A3"], exact=True, timeout_ms=1000)
        assert shown["matched"], f"a non-matching row is shown: {shown}"
        cells = (await page.call("cells", rowId="ORD-A3"))["cells"]
        assert cells["symbol"] == "AAPL" and cells["status"] == "NEW"
        assert cells["orderQty"] == "250.125" and cells["price"] == "187.3125"  # exact decimals
        texts = (await page.call("text", selectors=["#row-count"]))["texts"]
        assert texts["#row-count"] == "1"
        await page.call("screenshot", path=str(tmp_path / "blotter-orders.png"))

        # An invalid filter is refused by the server; the page says why and keeps its view.
        refused = await page.apply_filter(
            [{"field": "orderQty", "operator": "greaterThan", "value": "lots"}]
        )
        assert refused["state"] == "Not applied"
        assert "INVALID_FILTER" in refused["error"], refused
        assert "filter.filters[0].value" in refused["error"], refused
        assert (await page.wait_rows(["ORD-A3"], exact=True, timeout_ms=1000))["matched"]

        # A network blip: the page reconnects with backoff, resubscribes with its filter, and
        # follows changes again.
        await page.call("dropConnection")
        await page.call("waitFor", selector='#status[data-state="reconnecting"]')
        await page.call("waitFor", selector='#status[data-state="connected"]', timeoutMs=10000)
        log = (await page.call("statusLog"))["log"]
        assert any(line.startswith("Real-Time Updates: Reconnecting in") for line in log), log
        await produce(worker, orders(("ORD-A3", 2, "AAPL", "PARTIALLY_FILLED"),
                                     ("ORD-A4", 1, "AAPL", "NEW")))
        shown = await page.wait_rows(["ORD-A3", "ORD-A4"], exact=True, timeout_ms=5000)
        assert shown["matched"], f"no live updates after the reconnect: {shown}"
        await page.call("waitFor", timeoutMs=2000, selector=(
            '.ag-row[row-id="ORD-A3"] .ag-cell[col-id="status"]:text-is("PARTIALLY_FILLED")'))

        # Positions: a row per position, its lots on expand (from REST), a status badge.
        await produce(worker, [
            ("trades", "ACC-1:AAPL", "Trade", trade("T-1", "100", "187.5", 0)),
            ("trades", "ACC-1:AAPL", "Trade", trade("T-2", "50.5", "188.25", 1000)),
        ])
        await page.call("tab", type="Position")
        key = "ACC-1:AAPL"
        row = f'.ag-center-cols-container .ag-row[row-id="{key}"]'
        assert (await page.wait_rows([key], timeout_ms=20000))["matched"]
        await page.call("waitFor", selector=f'{row} .ag-cell[col-id="lotCount"]:text-is("2")',
                        timeoutMs=20000)
        cells = (await page.call("cells", rowId=key))["cells"]
        assert cells["quantity"] == "150.5"
        await page.call("waitFor", selector=f'.ag-row[row-id="{key}"] .badge-reconciled')
        await page.call("click", selector=f'.lots-toggle[data-key="{key}"]')
        lots = await page.call("waitFor", selector=".lots-table", timeoutMs=10000)
        assert "T-1" in lots["text"] and "T-2" in lots["text"] and "188.25" in lots["text"]
        screenshot = tmp_path / "blotter-positions.png"
        await page.call("screenshot", path=str(screenshot))

        assert await page.problems() == []
    print(f"\nscreenshots: {tmp_path / 'blotter-orders.png'} {screenshot}")
    print(f"rows appeared/disappeared {latency * 1000:.0f} ms after the produce was acknowledged")


def mint(secret: str, user: str, accounts: list[str]) -> str:
    claims = {"sub": user, "accounts": accounts, "exp": int(time.time()) + 600}
    return jwt.encode(claims, secret, algorithm="HS256")


def public_page_paths() -> str:
    """AUTH_PUBLIC_PATHS with the probes and every file of the page (the page holds no data)."""
    files = sorted(
        "/blotter/static/" + path.relative_to(STATIC_DIR).as_posix()
        for path in STATIC_DIR.rglob("*")
        if path.is_file()
    )
    probes = ["/health", "/health/liveness", "/health/readiness", "/health/detailed", "/metrics"]
    return ",".join([*probes, "/blotter", *files])


async def test_page_with_auth_and_a_slow_consumer(
    browser_installed: None, deployment: Any, tmp_path: Path
) -> None:
    secret = "browser-test-secret-of-at-least-32-bytes"
    token = mint(secret, "alice", ["ACC-1"])
    supervisor = mint(secret, "supervisor", ["*"])
    async with PageDriver(tmp_path / "browser.log") as page:
        worker = await start_worker(
            deployment,
            page,
            AUTH_MODE="jwt",
            AUTH_JWT_SECRET=secret,
            AUTH_PUBLIC_PATHS=public_page_paths(),
            # Tiny flow-control bounds, so a page that stops granting credits is a slow consumer
            # after a handful of orders.
            BLOTTER_MAX_CREDITS="4",
            BLOTTER_MAX_PENDING="2",
        )
        await produce(worker, [
            ("orders", "ORD-MINE", "Order", order("ORD-MINE", 1, "AAPL", "NEW", account="ACC-1")),
            ("orders", "ORD-THEIRS", "Order",
             order("ORD-THEIRS", 1, "AAPL", "NEW", account="ACC-2")),
        ])
        # Without a token the page says what it needs instead of showing anything.
        await page.open(worker.url + "/blotter", expect="disconnected")
        texts = (await page.call("text", selectors=["#error"]))["texts"]
        assert "needs a token" in texts["#error"]
        refused = await page.problems(clear=True)
        assert refused and all("401" in p["text"] for p in refused), refused

        # The dev-token path: ?access_token= in the URL, removed from the address bar at once.
        opened = await page.open(f"{worker.url}/blotter?access_token={token}")
        assert "access_token" not in opened["url"]
        # Once the worker's view holds both orders (a supervisor sees them), the page shows
        # only the one of its token's account.
        async with BlotterClient(worker.url, token=supervisor) as client:
            view = await client.subscribe("all", "Order")
            await await_condition(
                lambda: {"ORD-MINE", "ORD-THEIRS"} <= view.rows.keys(), 20, "both orders"
            )
        shown = await page.wait_rows(["ORD-MINE"], exact=True, timeout_ms=5000)
        assert shown["matched"], shown

        # The login field: a fresh tab without the token, then the token typed in.
        await page.open(worker.url + "/blotter", expect="disconnected")
        await page.call("fill", selector="#token", value=token)
        await page.call("click", selector="#token-form button[type=submit]")
        await page.call("waitFor", selector='#status[data-state="connected"]')
        shown = await page.wait_rows(["ORD-MINE"], exact=True, timeout_ms=5000)
        assert shown["matched"], shown
        problems = await page.problems(clear=True)
        assert all("401" in p["text"] for p in problems), problems

        # Flow control: the grid stops granting credits, the server closes the subscription as
        # a slow consumer, the page says so, and once it catches up it holds every row again.
        await page.call("freezeGrid", frozen=True)
        burst = [f"ORD-B{i:02d}" for i in range(12)]
        await produce(worker, [
            ("orders", oid, "Order", order(oid, 1, "MSFT", "NEW", account="ACC-1")) for oid in burst
        ])
        notice = await page.call("waitFor", selector="#notice:has-text('slow consumer')",
                                 timeoutMs=10000)
        assert "Resubscribing" in notice["text"]
        await page.call("freezeGrid", frozen=False)
        shown = await page.wait_rows(["ORD-MINE", *burst], exact=True, timeout_ms=10000)
        assert shown["matched"], shown
        assert await page.problems() == []
