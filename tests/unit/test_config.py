"""The configuration parsers: every error names its variable; blanks mean the default."""

from __future__ import annotations

import pytest

from app.config import env_flag, env_int, env_number, load_settings
from app.errors import ConfigError
from web.auth_config import AuthLimits
from web.blotter.config import BlotterConfig


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"WEB_PORT": "http"}, "WEB_PORT"),
        ({"WEB_PORT": "70000"}, "WEB_PORT"),
        ({"BROKER_URL": "kafka://nohost"}, "BROKER_URL"),
        ({"DEFAULT_LOT_METHOD": "AVERAGE"}, "DEFAULT_LOT_METHOD"),
        ({"BUSINESS_DATE": "tomorrow"}, "BUSINESS_DATE"),
        ({"LOG_JSON": "maybe"}, "LOG_JSON"),
        ({"AUTH_MODE": "jwt"}, "AUTH_MODE"),  # jwt without any key
        ({"WS_SUBSCRIBE_BURST": "0"}, "WS_SUBSCRIBE_BURST"),
        ({"BLOTTER_WS_COMPRESS": "sometimes"}, "BLOTTER_WS_COMPRESS"),
        ({"AGENT_BATCH_WITHIN_MS": "0"}, "AGENT_BATCH_WITHIN_MS"),  # 0 would wait forever
        ({"AGENT_BATCH_MAX_EVENTS": "many"}, "AGENT_BATCH_MAX_EVENTS"),
    ],
)
def test_errors_name_the_variable(env: dict, variable: str) -> None:
    base = {"AUTH_MODE": "disabled", **env}
    with pytest.raises(ConfigError) as err:
        load_settings(base)
        AuthLimits.from_env(base)
        BlotterConfig.from_env(base)
    assert err.value.variable == variable


def test_blank_means_default_and_values_parse() -> None:
    env = {"A": " ", "B": "12", "C": "0.5", "D": "off"}
    assert env_int(env, "A", 7, 0, 10) == 7
    assert env_int(env, "B", 7, 0, 20) == 12
    assert env_number(env, "C", 1.0, 0, 1) == 0.5
    assert env_flag(env, "D", True) is False
    with pytest.raises(ConfigError):
        env_number({"N": "nan"}, "N", 1.0, 0, 1)


def test_agent_batching_from_env() -> None:
    settings = load_settings({"AUTH_MODE": "disabled", "AGENT_BATCH_MAX_EVENTS": "50",
                              "AGENT_BATCH_WITHIN_MS": "20"})
    assert (settings.batching.max_events, settings.batching.within_s) == (50, 0.02)
    default = load_settings({"AUTH_MODE": "disabled"}).batching
    assert (default.max_events, default.within_s) == (500, 0.01)


def test_broker_url_forms_and_topic_prefix() -> None:
    settings = load_settings(
        {"AUTH_MODE": "disabled", "BROKER_URL": "kafka://a:1;b:2", "TOPIC_PREFIX": "x-"}
    )
    assert settings.bootstrap_servers == "a:1,b:2"
    assert not settings.embedded_broker
    assert settings.topics.orders == "x-order-events"
