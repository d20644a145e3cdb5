"""Configuration: arguments over LOGLOG_* variables over defaults; errors at start-up."""

from __future__ import annotations

import pytest

from loglog.config import build_config, build_config_lenient
from loglog.errors import ConfigError


def test_environment_fills_options_not_given_as_arguments():
    """LOGLOG_<OPTION> sets an option; an explicit argument wins over it."""
    env = {
        "LOGLOG_LEVEL": "debug",
        "LOGLOG_LOKI_URL": "http://loki:3100",
        "LOGLOG_LOKI_LABELS": "service=inference, env=prod",
        "LOGLOG_CAPACITY": "500",
        "LOGLOG_COLOR": "false",
        "LOGLOG_CONSOLE": "none",
    }
    config = build_config({"capacity": 42}, environ=env)
    assert config.level == 10
    assert config.loki_url == "http://loki:3100"
    assert dict(config.loki_labels) == {"service": "inference", "env": "prod"}
    assert config.capacity == 42
    assert config.color is False
    assert config.console is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"level": "loud"}, "unknown level 'loud'"),
        ({"console": "rainbow"}, 'use "text", "json" or None'),
        ({"capacity": 0}, "positive number of records"),
        ({"loki_url": "loki:3100"}, "http(s)://host:port"),
        ({"loki_labels": {"bad-name": "x"}}, "label names are"),
        ({"loki_labels": {f"l{i}": "v" for i in range(14)}}, "at most 15 labels"),
        ({"loki_dynamic_labels": ("trace_id",)}, "choose from level, host, logger"),
        ({"loki_labels": {"level": "x"}}, "both static and dynamic"),
        ({"colour": True}, "unknown loglog option(s) colour"),
        ({"loki_timeout": -1}, "positive number of seconds"),
    ],
)
def test_bad_settings_fail_with_the_option_and_the_fix(options, message):
    """Each mistake raises ConfigError naming the option and what to write instead."""
    with pytest.raises(ConfigError) as info:
        build_config(options, environ={})
    assert message in str(info.value)


def test_a_bad_environment_value_names_the_variable():
    """A typo in an environment variable points at that variable."""
    with pytest.raises(ConfigError, match="LOGLOG_CAPACITY='lots'"):
        build_config({}, environ={"LOGLOG_CAPACITY": "lots"})


def test_explicit_configure_still_raises_and_never_shows_the_password():
    """configure() fails at start-up on a port that cannot exist; the message names the
    option and hides the URL's password."""
    with pytest.raises(ConfigError) as caught:
        build_config({"loki_url": "http://admin:hunter2@loki:99999"}, environ={})
    assert "loki_url" in str(caught.value) and "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        build_config({}, environ={"LOGLOG_OTLP_ENDPOINT": "ftp://u:secret@x"})
    assert "secret" not in str(caught.value)


def test_lenient_environment_drops_each_bad_value_for_its_default():
    """The log-call path: every bad LOGLOG_* value falls back to its default, one message
    each, and the good ones are kept."""
    config, problems = build_config_lenient(
        {
            "LOGLOG_CAPACITY": "lots",
            "LOGLOG_LOKI_URL": "http://u:pw@loki:99999",
            "LOGLOG_LEVEL": "debug",
            "LOGLOG_SPOOL_SLOTS": "0",
        }
    )
    assert config.capacity == 10_000 and config.loki_url is None and config.spool_slots == 512
    assert config.level == 10
    assert len(problems) == 3 and not any("pw@" in problem for problem in problems)
