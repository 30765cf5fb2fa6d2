"""``/report`` accepts only reports from pages this hub served, in the shape of
docs/architecture.md, "The worker page's job mode".

Each page load carries its own token; a report without one, with a made-up, expired or
forgotten one, or with a body that is not a report, is refused (403 / 400 / 413) and never
reaches ``WorkerPage.reports``. (The page's own authenticated reports are exercised by the
Chromium tests in ``test_browser.py``.)
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rxchannel.web import WorkerPage

GOOD = {"ok": True, "path": "big.bin", "bytes": 4194304, "sha256": "ab" * 32, "seconds": 1.25}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, WorkerPage, Clock, list[dict[str, Any]]]]:
    clock = Clock()
    page = WorkerPage(token_lifetime=60, max_tokens=3, clock=clock)
    accepted: list[dict[str, Any]] = []
    page.on_report = accepted.append
    app = web.Application()
    page.setup(app)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", page, clock, accepted
    finally:
        await runner.cleanup()


async def token_of_a_page(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/") as response:
        html = await response.text()
    match = re.search(r'name="rxchannel-report-token" content="([^"]+)"', html)
    assert match and match.group(1) != "__RXCHANNEL_REPORT_TOKEN__", "the page carries a real token"
    return match.group(1)


async def post(
    session: aiohttp.ClientSession, url: str, body: Any, token: str | None = None, raw: bytes | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": token} if token is not None else {}
    data = raw if raw is not None else aiohttp.payload.JsonPayload(body)
    async with session.post(f"{url}/report", data=data, headers=headers) as response:
        return response.status, await response.json()


async def test_forged_reports_are_refused_and_never_recorded(site: Any) -> None:
    url, page, _, accepted = site
    async with aiohttp.ClientSession() as session:
        real = await token_of_a_page(session, url)
        for authorization in (None, "Bearer made-up-token", f"Basic {real}", "Bearer ", f"Bearer {real}x"):
            status, body = await post(session, url, GOOD, authorization)
            assert status == 403, authorization
            assert "pages this hub served" in body["error"]
    assert accepted == [] and list(page.reports) == []
    assert page.refused == 5


async def test_a_served_pages_token_is_accepted_each_page_has_its_own(site: Any) -> None:
    url, page, _, accepted = site
    async with aiohttp.ClientSession() as session:
        first, second = await token_of_a_page(session, url), await token_of_a_page(session, url)
        assert first != second
        assert await post(session, url, GOOD, f"Bearer {first}") == (200, {"ok": True})
        failure = {"ok": False, "error": "the DataChannel closed", "path": "big.bin"}
        assert await post(session, url, failure, f"Bearer {second}") == (200, {"ok": True})
        assert await post(session, url, GOOD, f"bearer {first}") == (200, {"ok": True}), "a page may report again"
    assert accepted == [GOOD, failure, GOOD] and list(page.reports) == accepted


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([1, 2], "JSON object"),
        ({"path": "x"}, '"ok"'),
        ({"ok": "yes"}, '"ok"'),
        ({"ok": False}, '"error"'),
        ({**GOOD, "path": ""}, '"path"'),
        ({**GOOD, "bytes": -1}, '"bytes"'),
        ({**GOOD, "bytes": True}, '"bytes"'),
        ({**GOOD, "sha256": "AB" * 32}, '"sha256"'),
        ({**GOOD, "sha256": None}, '"sha256"'),
        ({**GOOD, "seconds": "1"}, '"seconds"'),
        ({k: v for k, v in GOOD.items() if k != "seconds"}, '"seconds"'),
    ],
)
async def test_a_body_that_is_not_a_report_is_refused_naming_the_field(site: Any, body: Any, field: str) -> None:
    url, page, _, accepted = site
    async with aiohttp.ClientSession() as session:
        token = await token_of_a_page(session, url)
        status, answer = await post(session, url, body, f"Bearer {token}")
    assert status == 400 and field in answer["error"], answer
    assert accepted == []


async def test_not_json_too_large_expired_and_forgotten_tokens_are_refused(site: Any) -> None:
    url, page, clock, accepted = site
    async with aiohttp.ClientSession() as session:
        token = await token_of_a_page(session, url)
        assert (await post(session, url, None, f"Bearer {token}", raw=b"{not json"))[0] == 400
        assert (await post(session, url, None, f"Bearer {token}", raw=b"[" * 100_000))[0] == 413
        assert (await post(session, url, None, f"Bearer {token}", raw=b"[" * 60_000))[0] == 400
        clock.now += 61
        assert (await post(session, url, GOOD, f"Bearer {token}"))[0] == 403, "expired"
        tokens = [await token_of_a_page(session, url) for _ in range(4)]  # max_tokens=3: the oldest is forgotten
        assert (await post(session, url, GOOD, f"Bearer {tokens[0]}"))[0] == 403, "forgotten"
        for token in tokens[1:]:
            assert (await post(session, url, GOOD, f"Bearer {token}"))[0] == 200
    assert len(accepted) == 3


async def test_the_page_and_its_modules_are_served(site: Any) -> None:
    url, *_ = site
    async with aiohttp.ClientSession() as session:
        for module in ("rxchannel.js", "page.js", "connection.js", "frames.js", "demand.js", "sha256.js"):
            async with session.get(f"{url}/{module}") as response:
                assert response.status == 200 and response.content_type == "text/javascript", module
                assert response.headers["Cache-Control"] == "no-store"
        async with session.get(f"{url}/") as response:
            assert response.headers["Referrer-Policy"] == "no-referrer"
