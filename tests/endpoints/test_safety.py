"""What an endpoint lets through, and what it does not (issue 27, "Safety").

Only the configured upstream is reachable: paths that would leave the endpoint's prefix
(``..``, encoded separators) or name another host (absolute URLs, ``//``) are refused
before any request goes out, redirects out of the endpoint are refused (the other host
never hears of it) and redirects within it are followed; headers pass through
allow-lists both ways, hop-by-hop headers never; the hub's secret applies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import rxchannel as rx
from rxchannel.core import ErrorCode, RemoteError, SetupRejectedError, with_secret
from rxchannel.hub import Hub, request_endpoint
from rxchannel.hub.endpoints import Endpoint, parse_endpoint, upstream_url
from tests.endpoints.conftest import World
from tests.endpoints.upstream import Upstream
from tests.support import collect

OUTSIDE = [
    ("../x", "'.' and '..' are not allowed"),
    ("items/../../x", "'.' and '..' are not allowed"),
    ("%2e%2e/x", "'.' and '..' are not allowed"),
    ("%2E%2e/%2e%2E/elsewhere", "'.' and '..' are not allowed"),
    ("./items", "'.' and '..' are not allowed"),
    ("a%2f..%2fx", "an encoded '/'"),
    ("a%5c..%5cx", "an encoded '/', '\\'"),
    ("a\\..\\x", "backslashes"),
    ("http://127.0.0.1:1/x", "names another host"),
    ("HTTPS://example.com/", "names another host"),
    ("/127.0.0.1:1/x", "names another host"),
    ("//example.com/x", "names another host"),
    ("a//b", "empty segments"),
    ("a b", "spaces"),
    ("x#frag", "a fragment"),
]


@pytest.mark.parametrize("path, why", OUTSIDE, ids=[p for p, _ in OUTSIDE])
async def test_paths_that_would_leave_the_endpoint_are_refused_before_any_request(
    world: World, path: str, why: str
) -> None:
    stream = world.peer.request_stream(f"endpoints/api/{path}")
    with pytest.raises(RemoteError) as caught:
        await collect(stream)
    assert caught.value.code in (ErrorCode.REJECTED, ErrorCode.INVALID)
    assert why in caught.value.message
    assert world.upstream.requests == [], "the upstream was asked"
    assert world.hub.endpoints.opened == 0


def test_the_url_built_stays_under_the_prefix_and_keeps_its_encoding() -> None:
    api = Endpoint("api", "http://10.0.0.5:8080/v1/")
    assert str(upstream_url(api, "items/a%20b?x=1&y=%2F", {"z": ["1", "2"]})) == (
        "http://10.0.0.5:8080/v1/items/a%20b?x=1&y=%2F&z=1&z=2"
    )
    assert str(upstream_url(api, "")) == "http://10.0.0.5:8080/v1"
    assert str(upstream_url(api, "dir/")) == "http://10.0.0.5:8080/v1/dir/"
    assert str(upstream_url(api, "caf\u00e9")) == "http://10.0.0.5:8080/v1/caf%C3%A9"
    root = Endpoint("root", "http://10.0.0.5:8080")
    assert str(upstream_url(root, "x")) == "http://10.0.0.5:8080/x"


@pytest.mark.parametrize(
    "text, why",
    [
        ("api", "is not NAME=http"),
        ("api=ftp://h/x", "must be http://HOST:PORT"),
        ("api=http:///x", "must be http://HOST:PORT"),
        ("api=http://h/x?q=1", "may not have a query"),
        ("api=http://user:pw@h/x", "credentials"),
        ("api=http://h/a/../b", "'.' or '..'"),
        ("a/b=http://h/", "endpoint name"),
    ],
)
def test_an_endpoint_that_cannot_be_one_is_refused_when_configured(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_endpoint(text)


async def test_an_unknown_endpoint_is_refused_and_names_the_ones_there_are(world: World) -> None:
    with pytest.raises(RemoteError) as caught:
        await request_endpoint(world.peer, "admin", "x")
    assert caught.value.code == ErrorCode.REJECTED
    assert "no endpoint named 'admin' on this hub (it has: api)" in caught.value.message
    assert json.loads((await world.peer.request_response("endpoints")).data) == ["api"]


async def test_a_redirect_to_another_host_is_refused_and_that_host_never_asked(world: World) -> None:
    async with Upstream() as other:
        with pytest.raises(RemoteError) as caught:
            await request_endpoint(world.peer, "api", "away", query={"to": other.url})
        assert caught.value.code == ErrorCode.REJECTED
        assert "redirected to a location outside the endpoint" in caught.value.message
        assert other.url not in caught.value.message  # nothing of the upstream's world leaks to workers
        assert other.requests == []


async def test_a_redirect_out_of_the_prefix_on_the_same_host_is_refused(world: World) -> None:
    with pytest.raises(RemoteError, match="outside the endpoint"):
        await request_endpoint(world.peer, "api", "away", query={"to": world.upstream.url})
    assert "/elsewhere" not in world.upstream.requests


async def test_a_redirect_that_hides_dot_segments_is_refused(world: World) -> None:
    with pytest.raises(RemoteError, match="outside the endpoint"):
        await request_endpoint(world.peer, "api", "away", query={"to": "/v1/a%2f..%2f.."})
    assert len(world.upstream.requests) == 1  # only the redirecting request: nothing followed


async def test_a_redirect_within_the_endpoint_is_followed(world: World) -> None:
    response = await request_endpoint(world.peer, "api", "hop")
    assert response.status == 200
    assert await response.json() == {"items": [1, 2, 3], "query": [["from", "hop"]]}
    assert world.upstream.requests == ["/v1/hop", "/v1/items?from=hop"]


async def test_headers_pass_through_allow_lists_both_ways_and_hop_by_hop_headers_never(world: World) -> None:
    sent = {
        "Accept": "application/json",
        "If-None-Match": '"v0"',
        "X-Request-Id": "r1",
        "Cookie": "session=stolen",
        "Authorization": "Bearer worker-token",
        "Host": "evil.example",
        "X-Forwarded-For": "1.2.3.4",
        "Connection": "keep-alive, Accept-Language",  # names a header as hop-by-hop: it is dropped too
        "Accept-Language": "fr",
        "Keep-Alive": "timeout=1",
        "TE": "trailers",
        "Transfer-Encoding": "chunked",
        "Upgrade": "websocket",
        "Proxy-Authorization": "Basic eA==",
    }
    response = await request_endpoint(world.peer, "api", "echo", headers=sent)
    seen = {k.lower(): v for k, v in (await response.json())["headers"].items()}
    assert seen["accept"] == "application/json"
    assert seen["if-none-match"] == '"v0"' and seen["x-request-id"] == "r1"
    assert seen["host"] == world.upstream.url.removeprefix("http://")
    for dropped in ("cookie", "authorization", "x-forwarded-for", "accept-language", "keep-alive", "te", "upgrade"):
        assert dropped not in seen, dropped
    assert "proxy-authorization" not in seen and seen.get("transfer-encoding") is None
    # and back: only the allow-list, never the hop-by-hop ones (nor those Connection names)
    assert response.headers["etag"] == '"v1"' and response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"] == "abc"
    for dropped in ("set-cookie", "x-internal", "keep-alive", "connection", "x-hop", "proxy-authenticate"):
        assert dropped not in response.headers, dropped


async def test_a_header_value_with_a_line_break_is_refused(world: World) -> None:
    with pytest.raises(RemoteError, match="on one line") as caught:
        await request_endpoint(world.peer, "api", "echo", headers={"Accept": "text/html\r\nX-Injected: 1"})
    assert caught.value.code == ErrorCode.INVALID
    assert world.upstream.requests == []


@pytest.mark.parametrize("method", ["CONNECT", "TRACE", "get\r\nX"])
async def test_methods_outside_the_list_are_refused(world: World, method: str) -> None:
    with pytest.raises(RemoteError, match="is not allowed"):
        await request_endpoint(world.peer, "api", "echo", method=method)
    assert world.upstream.requests == []


async def test_the_hubs_secret_covers_its_endpoints(tmp_path: Path) -> None:
    async with Upstream() as upstream:
        hub = Hub(tmp_path, endpoints={"api": f"{upstream.url}/v1"})
        server = await rx.serve(hub.router, transport="ws", config=with_secret(None, "s3cret", server=True))
        try:
            with pytest.raises(SetupRejectedError):
                stranger = await rx.connect(server.url)
                try:
                    await request_endpoint(stranger, "api", "items")
                finally:
                    await stranger.close()
            assert upstream.requests == []
            async with await rx.connect(server.url, config=with_secret(None, "s3cret", server=False)) as peer:
                response = await request_endpoint(peer, "api", "items")
                assert response.status == 200 and (await response.json())["items"] == [1, 2, 3]
        finally:
            await server.close()
            hub.close()
