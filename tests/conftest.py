"""Shared fixtures. Integration tests run real workers (subprocesses) against one embedded broker
per session on a free loopback port; each test gets its own topic prefix and consumer group."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.broker import EmbeddedBroker, free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    data = tmp_path_factory.mktemp("broker")
    instance = EmbeddedBroker(free_port(), data, log_path=data / "broker.log")
    instance.start()
    yield instance
    instance.stop()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    """Poll `condition` until true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def await_condition(
    condition: Callable[[], object], timeout: float, what: str, step: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Worker:
    """A `faust -A app.main worker` subprocess with its own data dir and web port."""

    def __init__(self, env: dict[str, str], data_dir: Path, log_path: Path) -> None:
        self.env = env
        self.data_dir = data_dir
        self.log_path = log_path
        self.web_port = int(env["WEB_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "app.main", "worker", "-l", "info",
             "--web-port", str(self.web_port)],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def http_status(self, path: str) -> int | None:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def wait_ready(self, timeout: float = 60.0) -> float:
        started = time.monotonic()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log_tail()}")
            return self.http_status("/health/readiness") == 200

        try:
            wait_for(ready, timeout, "worker readiness", step=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker log ---\n{self.log_tail()}") from None
        return time.monotonic() - started

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"worker did not stop within {timeout} s") from None

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def deployment(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Factory of workers sharing one test-unique app id and topic prefix."""
    tag = uuid.uuid4().hex[:8]
    base_env = {
        **os.environ,
        "EMBEDDED_BROKER_PORT": str(broker.port),
        "APP_ID": f"blotter-test-{tag}",
        "TOPIC_PREFIX": f"t{tag}-",
        "TOPIC_PARTITIONS": "4",
        "AUTH_MODE": "disabled",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    base_env.pop("BROKER_URL", None)
    workers: list[Worker] = []

    def make(index: int | None = None, **extra_env: str) -> Worker:
        n = len(workers) if index is None else index
        data_dir = tmp_path / f"worker{n}"
        data_dir.mkdir(exist_ok=True)
        env = {
            **base_env,
            "DATA_DIR": str(data_dir),
            "WEB_PORT": str(free_port()),
            "CONSUMER_GROUP_INSTANCE_ID": f"worker-{tag}-{n}",
            **extra_env,
        }
        worker = Worker(env, data_dir, tmp_path / f"worker{n}.log")
        workers.append(worker)
        return worker

    make.env = base_env  # type: ignore[attr-defined]
    yield make
    for worker in workers:
        worker.kill()


@pytest.fixture
def http_stub() -> Iterator[Callable[[dict], str]]:
    """A loopback HTTP server answering `routes[path] = (status, json_body)`; the dict may be
    changed while it runs (e.g. a schema registry that starts failing, then recovers)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    servers: list[ThreadingHTTPServer] = []

    def start(routes: dict) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = routes.get(self.path.split("?")[0], (404, {"error_code": 404}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
