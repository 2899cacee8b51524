"""Browser tests install their own chromium and playwright-core (see .ci/install-browser.sh)."""

from __future__ import annotations

import pytest

from tests.browser.page_driver import BrowserUnavailable, install_browser


@pytest.fixture(scope="session")
def browser_installed() -> None:
    """Chromium and playwright-core are present; skip only when chromium cannot be installed."""
    try:
        install_browser()
    except BrowserUnavailable as exc:
        pytest.skip(f"chromium cannot be installed on this machine, browser test skipped: {exc}")
