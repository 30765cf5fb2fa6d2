"""A real nats-server with JetStream for the tests and benchmarks: a free port, its store in a
temporary directory, stopped (and its store removed) when done. No mock of NATS anywhere."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["NatsCluster", "NatsServer", "nats_server_missing"]

LISTENING = re.compile(r"Listening for client connections on [^\s]*:(\d+)")


def nats_server_missing() -> str | None:
    """Why the JetStream tests cannot run here, or None (``make test`` installs Debian's nats-server)."""
    if shutil.which("nats-server") is None:
        return "nats-server is not installed (make test installs Debian's nats-server)"
    return None


class NatsServer:
    """``nats-server -js`` on 127.0.0.1 and a port it picks, storing JetStream under ``store``
    (a new temporary directory by default)."""

    def __init__(
        self, store: Path | None = None, *, port: int = -1, jetstream: bool = True, args: tuple[str, ...] = ()
    ):
        self._own_store = store is None
        self.store = store if store is not None else Path(tempfile.mkdtemp(prefix="rxc-nats-"))
        self.port = port
        self.jetstream = jetstream
        self.args = args
        self.process: subprocess.Popen[str] | None = None
        self.log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start it and wait until it listens (the port it picked is read from its log)."""
        self.store.mkdir(parents=True, exist_ok=True)
        self.log_path = self.store.parent / f"{self.store.name}.log"
        cmd = ["nats-server", "-a", "127.0.0.1", "-p", str(self.port)]
        if self.jetstream:
            cmd += ["-js", "-sd", str(self.store)]
        cmd += self.args
        with open(self.log_path, "w") as log:  # a file, not a pipe: nobody has to keep reading it
            self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text()
            found = LISTENING.search(text)
            if found and "Server is ready" in text:
                self.port = int(found.group(1))
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.01)
        self.stop()
        raise RuntimeError("nats-server did not start:\n" + text[-2000:])

    def restart(self, *, kill: bool = True) -> None:
        """Stop it (SIGKILL by default: a crash) and start it again on the same port and store."""
        assert self.process is not None
        if kill:
            self.process.kill()
        else:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)
        self.start()

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and remove a store it created."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._own_store:
            shutil.rmtree(self.store, ignore_errors=True)
            if self.log_path is not None:
                self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class NatsCluster:
    """Three (or ``size``) nats-servers routed into one JetStream cluster, each with its own store."""

    def __init__(self, size: int = 3):
        self.root = Path(tempfile.mkdtemp(prefix="rxc-nats-cluster-"))
        routes = [f"nats://127.0.0.1:{_free_port()}" for _ in range(size)]
        self.servers = [
            NatsServer(
                self.root / f"n{i}",
                args=("-n", f"n{i}", "--cluster_name", "rxc", "--cluster", routes[i], "--routes", ",".join(routes)),
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def by_name(self, name: str) -> NatsServer:
        return self.servers[int(name.removeprefix("n"))]

    def __enter__(self) -> NatsCluster:
        try:
            for server in self.servers:
                server.start()
            deadline = time.monotonic() + 20
            while not all("metadata leader" in s.log_path.read_text() for s in self.servers if s.log_path):
                if time.monotonic() > deadline:
                    raise RuntimeError("the nats-server cluster elected no JetStream leader")
                time.sleep(0.02)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)
