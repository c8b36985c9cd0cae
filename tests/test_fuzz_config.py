"""Bad input against the configuration loader: any file text and any WMHUB_* environment."""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from hub.config import ConfigError, HubConfig, load_config
from tests.reliability_report import fuzz

KEYS = st.sampled_from(
    [
        "hub_id", "data_dir", "devices", "demo", "meter_rate_ms", "offline_after_s", "io_timeout_s", "max_connecting",
        "command_timeout_s", "log_level", "plugin_log_levels", "mqtt", "http", "discovery", "url", "base_topic",
        "keepalive", "qos_state", "qos_meters", "port", "token", "enabled", "interfaces", "auto_approve",
        "homeassistant_prefix", "live_queue", "unknown",
    ]
)  # fmt: skip
TOML_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["embedded", "off", "mqtt://u:p@127.0.0.1:1883", "shure://127.0.0.1", "info", "+/#"]),
)
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=20,
)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string, except lone surrogates (then: ConfigError)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{json.dumps(key)} = {toml_value(item)}" for key, item in value.items()) + "}"


def toml_document(table: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in table.items())


def load_text(text: str | bytes) -> HubConfig:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "wmhub.toml"
        if isinstance(text, str):
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        else:
            path.write_bytes(text)
        return load_config(path, environ={})


@fuzz(
    "Config file (load_config)",
    "random bytes, random text and TOML documents of the config's own keys with wrong types and values",
    "a HubConfig or one ConfigError line; never another exception",
    max_examples=300,
    text=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        st.dictionaries(KEYS, TOML_VALUES, max_size=6).map(toml_document),
    ),
)
def test_config_file(text: str | bytes) -> None:
    try:
        config = load_text(text)
    except ConfigError as exc:
        assert "\n" not in str(exc).strip()
        return
    assert isinstance(config, HubConfig)


ENV_NAMES = st.lists(st.sampled_from(["MQTT", "URL", "HTTP", "PORT", "DEVICES", "HUB_ID", "X", ""]), min_size=1).map(
    lambda parts: "WMHUB_" + "__".join(parts)
)


@fuzz(
    "Config environment (WMHUB_*)",
    "random WMHUB_* variable names (nested, clashing: WMHUB_MQTT and WMHUB_MQTT__URL) and values",
    "a HubConfig or a ConfigError; never another exception",
    environ=st.dictionaries(ENV_NAMES, st.text(max_size=20), max_size=5),
)
def test_config_environment(environ: dict[str, str]) -> None:
    with contextlib.suppress(ConfigError):
        load_config(None, environ=environ)
