"""The embedded Kafka-compatible broker: noida-db, a binary shipped inside a PyPI wheel.

Why noida-db and not Tansu: see docs/adr/0001-embedded-broker.md. In short, it persists topics,
offsets and groups across restarts, answers ListOffsets correctly, accepts aiokafka's idempotent
producer, and delivers in milliseconds; its one protocol quirk (Fetch answered at once, ignoring
max_wait_ms) is compensated on the client side in embedded mode only (`app.embedded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from app.errors import BlotterError


class BrokerError(BlotterError):
    """The embedded broker could not be started or did not become ready."""


def broker_binary() -> Path:
    """Path of the noida-db executable inside its wheel."""
    try:
        import noida_db
    except ImportError as exc:  # pragma: no cover - a packaging error, not a runtime state
        raise BrokerError("the noida-db package is not installed") from exc
    binary = Path(noida_db.__file__).resolve().parent / "noida-db"
    if not binary.exists():
        found = shutil.which("noida-db")
        if found is None:
            raise BrokerError(f"noida-db binary not found at {binary}")
        binary = Path(found)
    return binary


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedBroker:
    """A noida-db process serving Kafka on 127.0.0.1:`port`, data kept under `data_dir`."""

    def __init__(self, port: int, data_dir: Path, log_path: Path | None = None) -> None:
        self.port = port
        self.data_dir = Path(data_dir)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        if port_open("127.0.0.1", self.port):
            raise BrokerError(f"port {self.port} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        cmd = [
            str(broker_binary()),
            "start",
            "--only",
            "kafka",
            "--host",
            "127.0.0.1",
            "--kafka-port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        self.process = subprocess.Popen(
            cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"noida-db exited with code {self.process.returncode}")
            if port_open("127.0.0.1", self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"noida-db did not listen on {self.port} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def kill(self) -> None:
        """kill -9, for fault tests."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


async def create_topics(
    bootstrap: str, topics: Iterable[str], partitions: int, compacted: Iterable[str] = ()
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Pre-creating matters: the embedded broker auto-creates unknown topics with one partition,
    which would silently break co-partitioning.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    compacted = set(compacted)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                name,
                partitions,
                1,
                topic_configs={"cleanup.policy": "compact"} if name in compacted else {},
            )
            for name in dict.fromkeys(topics)
            if name not in existing
        ]
        if new:
            await admin.create_topics(new)
        return [t.name for t in new]
    finally:
        await admin.close()


def run_foreground(port: int, data_dir: Path) -> int:
    """`python -m app broker`: run until Ctrl-C/SIGTERM, with the app's topics created."""
    from app.config import load_settings

    settings = load_settings({**os.environ, "AUTH_MODE": "disabled"})
    broker = EmbeddedBroker(port, data_dir)
    started = time.monotonic()
    broker.start()
    created = asyncio.run(
        create_topics(
            broker.bootstrap,
            settings.topics.all_topics(),
            settings.topic_partitions,
            compacted=(settings.topics.changes,),
        )
    )
    print(
        f"embedded broker ready in {time.monotonic() - started:.2f} s: "
        f"kafka://{broker.bootstrap} (data in {data_dir}; {len(created)} topics created)",
        flush=True,
    )
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stop and broker.process is not None and broker.process.poll() is None:
            time.sleep(0.2)
    finally:
        code = broker.process.poll() if broker.process else None
        broker.stop()
    if code not in (None, 0):
        print(f"embedded broker exited with code {code}", file=sys.stderr)
        return 1
    print("embedded broker stopped", flush=True)
    return 0
