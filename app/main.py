"""Entry point: `faust -A app.main worker -l info`.

Builds the one configuration object, the app, the serde, and registers agents, tables, web
routes and commands. Configuration errors stop the process with the variable's name.
"""

from __future__ import annotations

import sys

from app.config import load_settings
from app.errors import ConfigError
from app.faust_app import create_app
from app.serde import build_serde

try:
    settings = load_settings()
except ConfigError as exc:
    print(f"configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

from app.logs import configure_logging

configure_logging(settings.log_level, json=settings.log_json)

app = create_app(settings)
serde = build_serde(settings.schema_registry_url)

from agents.objects import register_object_agents  # noqa: E402
from agents.positions import register_position_agents  # noqa: E402
from app.health import HealthMonitor  # noqa: E402
from app.pricebook import PriceBook, follow_prices  # noqa: E402
from web.auth import Authenticator, auth_middleware  # noqa: E402
from web.blotter import install_blotter  # noqa: E402
from web.page import install_page  # noqa: E402
from web.routes import RestApi  # noqa: E402

pipelines = register_object_agents(
    app, serde, settings.topic_partitions, settings.topics.changes, settings.batching
)
prices = PriceBook()
positions = register_position_agents(app, settings, serde, prices)
monitor = HealthMonitor(app, stall_after_s=settings.health_stall_seconds)
authenticator = Authenticator.from_settings(settings)


def _install_auth(web_server: object) -> None:
    web_app = web_server.web_app  # type: ignore[attr-defined]
    web_app.middlewares.append(auth_middleware(authenticator))

    async def _prefetch(_: object) -> None:
        await authenticator.prefetch_keys()

    web_app.on_startup.append(_prefetch)


app.web_init_hooks.append(_install_auth)
rest = RestApi(app, monitor, pipelines, positions)
app.web_init_hooks.append(rest.install)
blotter = install_blotter(app, serde)
rest.replica = blotter
app.web_init_hooks.append(lambda server: install_page(server.web_app))


@app.task
async def _follow_prices() -> None:
    await follow_prices(prices, serde, settings.bootstrap_servers, settings.topics.market_prices)


@app.task
async def _monitor_health() -> None:
    await monitor.run()

from app import cli  # noqa: E402,F401  (registers `simulate` and other commands)
