"""`python -m app broker [--port N] [--data-dir D]`: the embedded broker in the foreground."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.config import DEFAULT_EMBEDDED_PORT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app")
    sub = parser.add_subparsers(dest="command", required=True)
    broker = sub.add_parser("broker", help="run the embedded Kafka-compatible broker")
    broker.add_argument("--port", type=int, default=DEFAULT_EMBEDDED_PORT)
    broker.add_argument("--data-dir", type=Path, default=Path("./data/broker"))
    args = parser.parse_args(argv)
    if args.command == "broker":
        from app.broker import run_foreground

        return run_foreground(args.port, args.data_dir)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
