"""A real browser for tests: installs chromium and playwright-core, and drives the blotter page.

The browser side is `drive_blotter.mjs` (Node + playwright-core + the distribution's chromium);
this module talks to it over stdin/stdout, one JSON command and one JSON answer per line, so the
Python test keeps the scenario and produces OMS events between browser steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BROWSER_DIR = Path(__file__).resolve().parent
REPO = BROWSER_DIR.parent.parent
INSTALL_SCRIPT = REPO / ".ci" / "install-browser.sh"
DRIVER_SCRIPT = BROWSER_DIR / "drive_blotter.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: Exit status of the install script when chromium cannot be installed on this machine.
NO_CHROMIUM = 3


class BrowserUnavailable(Exception):
    """Chromium cannot be installed here: the only reason a browser test may skip."""


def install_browser(timeout_s: float = 600) -> None:
    """Run the idempotent install script; BrowserUnavailable when chromium cannot be had,
    RuntimeError for any other failure (which must fail the test, not skip it)."""
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "CHROMIUM": CHROMIUM},
        check=False,
    )
    if result.returncode == NO_CHROMIUM:
        raise BrowserUnavailable(result.stderr.strip())
    if result.returncode != 0:
        raise RuntimeError(
            f"{INSTALL_SCRIPT.name} failed ({result.returncode}):\n{result.stderr[-4000:]}"
        )


class PageDriver:
    """One headless Chromium (fresh profile) driven command by command."""

    def __init__(self, log_path: Path, command_timeout_s: float = 30.0) -> None:
        self.log_path = log_path
        self.command_timeout_s = command_timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._log: Any = None

    async def __aenter__(self) -> PageDriver:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in __aexit__)
        self._proc = await asyncio.create_subprocess_exec(
            "node",
            str(DRIVER_SCRIPT),
            cwd=BROWSER_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "CHROMIUM": CHROMIUM},
            limit=64 * 1024 * 1024,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(Exception):
                await self._send(proc, {"cmd": "close"}, timeout_s=15)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()

    async def call(self, cmd: str, timeout_s: float | None = None, **args: Any) -> dict[str, Any]:
        """Run one driver command; AssertionError with the driver's message when it fails."""
        assert self._proc is not None, "use PageDriver as an async context manager"
        answer = await self._send(self._proc, {"cmd": cmd, **args}, timeout_s)
        if not answer.get("ok"):
            raise AssertionError(f"browser command {cmd!r} failed: {answer.get('error')}")
        return answer

    async def _send(
        self, proc: asyncio.subprocess.Process, message: dict[str, Any], timeout_s: float | None
    ) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        await proc.stdin.drain()
        line = await asyncio.wait_for(proc.stdout.readline(), timeout_s or self.command_timeout_s)
        if not line:
            raise AssertionError(f"the browser driver exited; see {self.log_path}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    # -- commands --------------------------------------------------------------------------
    async def open(self, url: str, expect: str = "connected") -> dict[str, Any]:
        """Open `url` in a new tab and wait until the status line reaches `expect`."""
        return await self.call("open", url=url, expect=expect)

    async def wait_rows(
        self,
        present: Sequence[str] = (),
        absent: Sequence[str] = (),
        *,
        exact: bool = False,
        timeout_ms: int = 5000,
    ) -> dict[str, Any]:
        """Wait until the grid shows every `present` row id and none of `absent` (and nothing
        else with `exact`). The answer's `matched` says whether it happened, `at` when (epoch
        ms), `rows` the ids shown then."""
        return await self.call(
            "waitRows",
            timeout_s=timeout_ms / 1000 + 30,
            present=list(present),
            absent=list(absent),
            exact=exact,
            timeoutMs=timeout_ms,
        )

    async def apply_filter(
        self, conditions: list[dict[str, Any]], logical: str = "AND"
    ) -> dict[str, Any]:
        """Build the filter in the page's builder, as a user would, and press Apply."""
        return await self.call("filter", conditions=conditions, logical=logical)

    async def problems(self, clear: bool = False) -> list[dict[str, Any]]:
        """Console errors and warnings, page errors, failed and 4xx/5xx requests so far."""
        answer = await self.call("problems", clear=clear)
        problems: list[dict[str, Any]] = answer["problems"]
        return problems
