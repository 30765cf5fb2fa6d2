"""Who gets in and what they can reach: shared-secret SETUP authentication and the hub's sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import rxchannel as rx
from rxchannel.core import ConnectionConfig, with_secret
from rxchannel.files import PathRefusedError, resolve_inside
from rxchannel.hub import Hub
from tests.support import eventually, make_file


@pytest.fixture
async def secured(tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    make_file(root / "f.bin", 1000, seed=1)
    hub = Hub(root)
    server = await rx.serve_tcp(hub.router, config=with_secret(None, "s3cret", server=True))
    yield server
    await server.close()


@pytest.mark.parametrize(
    "secret, reason",
    [(None, "authentication required"), ("wrong", "wrong shared secret")],
    ids=["no-secret", "wrong-secret"],
)
async def test_peers_without_the_secret_are_rejected_in_setup(
    secured: rx.Server, secret: str | None, reason: str, no_leaked_tasks: None
) -> None:
    client = await rx.connect_tcp("127.0.0.1", secured.port, config=with_secret(None, secret, server=False))
    with pytest.raises(rx.SetupRejectedError, match=reason) as info:
        await client.request_response("files")
    assert info.value.code == rx.ErrorCode.REJECTED_SETUP
    async with asyncio.timeout(5):
        assert isinstance(await client.wait_closed(), rx.SetupRejectedError)
    await eventually(lambda: not secured.peers, what="the hub dropping the refused connection")
    await client.close()


async def test_a_peer_with_the_secret_gets_in(secured: rx.Server) -> None:
    config = with_secret(ConnectionConfig(), "s3cret", server=False)
    async with await rx.connect_tcp("127.0.0.1", secured.port, config=config) as client:
        listing = await client.request_response("files")
        assert b"f.bin" in listing.data


# Names a hostile or careless peer might send. Each is refused, or (when it is a literal,
# harmless file name) simply not found inside the root. Nothing outside is ever served.
HOSTILE = [
    ("../secret.txt", "contains '..'"),
    ("./../secret.txt", "contains '..'"),
    ("sub/./../../secret.txt", "contains '..'"),
    ("..", "contains '..'"),
    ("..\\..\\secret.txt", "contains '..'"),
    ("/etc/passwd", "is absolute"),
    ("//etc/passwd", "is absolute"),
    ("\\etc\\passwd", "is absolute"),
    ("C:\\secret.txt", "is absolute"),
    ("c:secret.txt", "is absolute"),
    ("\\\\?\\C:\\secret.txt", "is absolute"),
    ("up\x00/../../secret.txt", "NUL byte"),
    ("escape", "resolves outside"),
    ("escape/secret.txt", "resolves outside"),
    ("loop", "not a usable file name"),
    ("%2e%2e/secret.txt", "no such file"),  # not decoded: a literal (missing) name
    ("\uff0e\uff0e/secret.txt", "no such file"),  # fullwidth dots are not '..'
    ("..\u2215secret.txt", "no such file"),  # division slash is not '/'
    ("~/secret.txt", "no such file"),
    ("$HOME/secret.txt", "no such file"),
]


@pytest.mark.parametrize("name, reason", HOSTILE, ids=[repr(n[:30]) for n, _ in HOSTILE])
async def test_hostile_names_never_reach_outside_the_root(tmp_path: Path, name: str, reason: str) -> None:
    root = tmp_path / "root"
    make_file(root / "f.bin", 10, seed=2)
    make_file(tmp_path / "secret.txt", 10, seed=3)
    (root / "escape").symlink_to(tmp_path)
    (root / "loop").symlink_to(root / "loop")
    hub = Hub(root)
    server = await rx.serve_tcp(hub.router)
    async with await rx.connect_tcp("127.0.0.1", server.port) as client:
        with pytest.raises(rx.RemoteError) as info:
            await client.request_response(f"buffers/{name}")
        assert reason in info.value.message
        assert str(tmp_path) not in info.value.message and "Traceback" not in info.value.message
    await server.close()


def test_resolve_inside_accepts_ordinary_names(tmp_path: Path) -> None:
    (tmp_path / "a b" / "ü").mkdir(parents=True)
    assert resolve_inside(tmp_path, "a b/ü/c.txt") == tmp_path.resolve() / "a b" / "ü" / "c.txt"
    with pytest.raises(PathRefusedError):
        resolve_inside(tmp_path, "a b/../../x")


def test_the_hub_binds_loopback_unless_told_otherwise() -> None:
    from rxchannel.cli import build_parser

    args = build_parser().parse_args(["serve", "."])
    assert args.host == "127.0.0.1"
