"""`make run`: embedded broker (when BROKER_URL is unset), a worker and the OMS simulator.

Prints the web view's URL once the worker is ready and stops everything on Ctrl-C. `SIMULATE=0`
starts without the simulator.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from app.broker import EmbeddedBroker, port_open


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health/readiness", timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.run")
    parser.add_argument("--port", type=int, default=19092, help="embedded broker port")
    parser.add_argument("--web-port", type=int, default=int(os.environ.get("WEB_PORT", 6066)))
    parser.add_argument("--rate", type=float, default=200.0, help="simulator events/s")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    env.setdefault("AUTH_MODE", "disabled")
    env.setdefault("LOG_LEVEL", "WARNING")
    env["WEB_PORT"] = str(args.web_port)
    data_dir = Path(env.get("DATA_DIR", "./data"))
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    broker: EmbeddedBroker | None = None
    procs: list[subprocess.Popen[bytes]] = []

    if not env.get("BROKER_URL"):
        env["EMBEDDED_BROKER_PORT"] = str(args.port)
        if not port_open("127.0.0.1", args.port):
            broker = EmbeddedBroker(args.port, data_dir / "broker", data_dir / "broker.log")
            broker.start()
            print(f"embedded broker listening on kafka://127.0.0.1:{args.port}", flush=True)

    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    faust_cmd = [sys.executable, "-m", "faust", "-A", "app.main"]
    try:
        procs.append(
            subprocess.Popen(
                [*faust_cmd, "worker", "-l", "warn", "--web-port", str(args.web_port)], env=env
            )
        )
        url = f"http://127.0.0.1:{args.web_port}"
        while not stopping and not _ready(url):
            if procs[0].poll() is not None:
                print("worker exited before it was ready", file=sys.stderr)
                return 1
            time.sleep(0.2)
        if stopping:
            return 0
        print(f"worker ready in {time.monotonic() - started:.1f} s", flush=True)
        if env.get("SIMULATE", "1") != "0":
            procs.append(
                subprocess.Popen([*faust_cmd, "simulate", "--rate", str(args.rate)], env=env)
            )
            print(f"OMS simulator producing {args.rate:g} events/s", flush=True)
        print(f"\n  Blotter:  {url}/blotter\n  API:      {url}/v1/trade-blotter/metadata\n"
              f"  Metrics:  {url}/metrics\n\nCtrl-C stops everything.\n", flush=True)
        while not stopping and all(p.poll() is None for p in procs[:1]):
            time.sleep(0.3)
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
