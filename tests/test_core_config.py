"""Configuration: file, environment and flags, and one clear line for every mistake."""

import os
import re
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from hub.auth import token_matches
from hub.config import ConfigError, HubConfig, load_config


def run_wmhub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=60, env=env)


def test_wrong_type_in_file_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('meter_rate_ms = "fast"\n')
    result = run_wmhub("run", "--config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "meter_rate_ms" in lines[0] and "bad.toml" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mqtt]\nkeepalive = 1\n", "mqtt.keepalive"),
        ("[mqtt]\nurl = 'ftp://x'\n", "mqtt.url"),
        ("colour = 'red'\n", "colour: unknown setting"),
        ("hub_id = 'has space'\n", "hub_id"),
        ("devices = [\n", "not valid TOML"),
        ("[frequency]\nprofile = 'tight'\n", "frequency.profile"),
        ("[frequency.bands.ulxd]\nlow_mhz = 470\n", "frequency.bands.ulxd.high_mhz"),
        ("[frequency.bands.ulxd]\nlow_mhz = 700\nhigh_mhz = 500\n", "frequency.bands.ulxd: low_mhz"),
        ("[discovery]\ninterfaces = ['garbage']\n", "discovery.interfaces"),
        # a wildcard in the prefix would make every topic the hub publishes invalid
        ("[mqtt]\nbase_topic = 'venue/#'\n", "mqtt.base_topic"),
    ],
)
def test_each_mistake_names_its_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        load_config(path, environ={})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", environ={})


def test_a_config_path_that_is_a_directory_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(tmp_path, environ={})


def test_environment_overrides_file_and_flags_override_environment(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("hub_id = 'from-file'\nmeter_rate_ms = 500\n[mqtt]\nbase_topic = 'venue'\n")
    environ = {"WMHUB_HUB_ID": "from-env", "WMHUB_MQTT__KEEPALIVE": "30", "WMHUB_DEVICES": "shure://a, shure://b"}
    config = load_config(path, {"hub_id": "from-flag"}, environ=environ)
    assert config.hub_id == "from-flag"
    assert config.meter_rate_ms == 500
    assert config.mqtt.keepalive == 30 and config.mqtt.base_topic == "venue"
    assert config.devices == ["shure://a", "shure://b"]


def test_bad_environment_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"offline_after_s"):
        load_config(None, environ={"WMHUB_OFFLINE_AFTER_S": "soon"})


def test_an_unknown_settings_value_is_never_shown(tmp_path: Path) -> None:
    """A misspelt secret is an unknown setting whose value is the secret."""
    path = tmp_path / "hub.toml"
    path.write_text("[http]\napi_token = 'MyVerySecretToken123'\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={"WMHUB_MQTT__PASWORD": "Hunter2-venue"})
    assert "unknown setting" in str(raised.value) and "Hunter2" not in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value) == f"{path}: http.api_token: unknown setting"


def test_list_settings_come_from_the_environment_as_commas_or_json() -> None:
    environ = {
        "WMHUB_HTTP__ALLOWED_HOSTS": "wmhub.venue.lan, foh.lan",
        "WMHUB_HTTP__CORS_ORIGINS": '["http://a.lan"]',
        "WMHUB_DISCOVERY__INTERFACES": "127.0.0.1",
        "WMHUB_MQTT_PASSWORD": "for the broker's password file, not the hub",
    }
    config = load_config(None, environ=environ)
    assert config.http.allowed_hosts == ["wmhub.venue.lan", "foh.lan"]
    assert config.http.cors_origins == ["http://a.lan"] and config.discovery.interfaces == ["127.0.0.1"]


def numeric_settings(model: type[BaseModel] = HubConfig, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every setting that holds a number (``int``, ``float``, ``Literal[0, 1, 2]``, ``| None``),
    in sections and in tables of sections (``frequency.bands.<family>.low_mhz``, under the key ``ulxd``)."""
    found: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        union = typing.get_origin(field.annotation) in (typing.Union, types.UnionType)
        for kind in typing.get_args(field.annotation) if union else (field.annotation,):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found += numeric_settings(kind, (*prefix, name))
            elif typing.get_origin(kind) is dict:
                table = typing.get_args(kind)[1]
                if isinstance(table, type) and issubclass(table, BaseModel):
                    found += numeric_settings(table, (*prefix, name, "ulxd"))
            elif kind in (int, float) or (
                typing.get_origin(kind) is Literal and all(type(choice) is int for choice in typing.get_args(kind))
            ):
                found.append((*prefix, name))
    return found


# a band needs both of its edges, low below high: the other edge is set beside the one tried
BAND = {"low_mhz": 470, "high_mhz": 534}
BAND_EDGES = {"low_mhz": 470.5, "high_mhz": 533.9, "step_khz": 12.5}


def numbers_for(path: tuple[str, ...]) -> list[int | float]:
    """Values the setting takes other than its default: each choice of a Literal, else a bound of its range."""
    model: Any = HubConfig
    for part in path:
        if part == "ulxd":
            continue
        field = model.model_fields[part]
        union = typing.get_origin(field.annotation) in (typing.Union, types.UnionType)
        kinds = typing.get_args(field.annotation) if union else (field.annotation,)
        kind = next((kind for kind in kinds if kind is not type(None)), field.annotation)
        model = typing.get_args(kind)[1] if typing.get_origin(kind) is dict else kind
    if typing.get_origin(model) is Literal:
        return list(typing.get_args(model))
    if path[:2] == ("frequency", "bands"):
        return [BAND_EDGES[path[-1]]]
    low = next((item.ge for item in field.metadata if hasattr(item, "ge")), None)
    above = next((item.gt for item in field.metadata if hasattr(item, "gt")), None)
    high = next((item.le for item in field.metadata if hasattr(item, "le")), None)
    candidates = [value for value in (low, None if above is None else above + 1, high, 7) if value is not None]
    return [next(value for value in candidates if value != field.default)]


def test_every_numeric_setting_comes_from_the_environment_as_from_the_file(tmp_path: Path) -> None:
    """An outside audit: WMHUB_MQTT__QOS_METERS=1 stopped the hub (mqtt.qos_meters: Input should be 0, 1 or 2
    (got '1')), the text of the environment never taken for a Literal[0, 1, 2] setting's number, while the same
    value in the file worked. Each setting holding a number is set from the environment, and must read as the
    file's value; ``true`` stays refused from both."""
    paths = numeric_settings()
    assert ("mqtt", "qos_state") in paths and ("mqtt", "qos_meters") in paths and ("http", "port") in paths
    assert ("frequency", "bands", "ulxd", "low_mhz") in paths
    refused = []
    for path in paths:
        for number in numbers_for(path):
            values = {**BAND, path[-1]: number} if path[:2] == ("frequency", "bands") else {path[-1]: number}
            table = ".".join(path[:-1])
            file = tmp_path / "wmhub.toml"
            file.write_text(
                (f"[{table}]\n" if table else "") + "".join(f"{key} = {value}\n" for key, value in values.items())
            )
            prefix = "WMHUB_" + "".join(part.upper() + "__" for part in path[:-1])
            environ = {prefix + key.upper(): str(value) for key, value in values.items()}
            from_file: Any = load_config(file, environ={}).model_dump()
            try:
                from_env: Any = load_config(None, environ=environ).model_dump()
            except ConfigError as exc:
                refused.append(str(exc))
                continue
            setting_file, setting_env = from_file, from_env
            for part in path:
                setting_file, setting_env = setting_file[part], setting_env[part]
            assert setting_env == setting_file == number, (path, setting_env, setting_file)
            with pytest.raises(ConfigError, match=re.escape(".".join(path))):
                load_config(None, environ={**environ, prefix + path[-1].upper(): "true"})
    assert refused == [], refused


def test_qos_from_the_environment_starts_the_hub(tmp_path: Path) -> None:
    """The audit's case end to end: ``wmhub run --check`` with the QoS settings docs/mqtt.md lists, given as
    WMHUB_MQTT__ variables (a container's environment), is ok, as the same values in a file are."""
    env = {"WMHUB_MQTT__QOS_STATE": "2", "WMHUB_MQTT__QOS_METERS": "1", "WMHUB_MQTT__QOS_SUBSCRIPTIONS": "0"}
    result = check_in(tmp_path, "--data-dir", str(tmp_path / "data"), env=env)
    assert result.returncode == 0 and "configuration ok" in result.stdout, result.stderr
    refused = check_in(tmp_path, "--data-dir", str(tmp_path / "data"), env={"WMHUB_MQTT__QOS_METERS": "3"})
    assert refused.returncode == 2, refused.stderr
    assert "environment (WMHUB_MQTT__QOS_METERS): mqtt.qos_meters: Input should be 0, 1 or 2" in refused.stderr


@pytest.mark.parametrize(
    ("flags", "environ", "expected"),
    [
        ({"hub_id": "bad id"}, {}, "command line: hub_id"),
        ({}, {"WMHUB_MQTT__KEEPALIVE": "1"}, "environment (WMHUB_MQTT__KEEPALIVE): mqtt.keepalive"),
        ({}, {"WMHUB_DISCOVERY__INTERFACES": "garbage"}, "WMHUB_DISCOVERY__INTERFACES): discovery.interfaces"),
        ({}, {"WMHUB_HUB_ID": "x" * 65}, "hub_id: String should have at most 64 characters"),
    ],
)
def test_a_mistake_names_where_it_came_from(
    tmp_path: Path, flags: dict[str, str], environ: dict[str, str], expected: str
) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("hub_id = 'fine'\n")
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(path, flags, environ=environ)


def test_a_file_nested_too_deeply_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    result = run_wmhub("run", "--config", str(path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "nested too deeply" in result.stderr


@pytest.mark.parametrize(
    ("flags", "environ"),
    [({}, {"WMHUB_MQTT__EMBEDDED_PORT": "21611"}), ({"mqtt": {"url": "embedded"}}, {})],
)
def test_a_removed_key_in_the_file_is_blamed_on_the_file_whatever_else_sets_its_section(
    tmp_path: Path, flags: dict[str, Any], environ: dict[str, str]
) -> None:
    """An outside audit: an old wmhub.toml's [mqtt] require_token was blamed on the environment (or the
    command line) as soon as anything else set a key of [mqtt] there, sending an upgrading user to look in
    the wrong place."""
    path = tmp_path / "wmhub.toml"
    path.write_text('[mqtt]\nurl = "embedded"\nrequire_token = true\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path, flags, environ=environ)
    assert str(refused.value).startswith(f"{path}: mqtt: mqtt.require_token was removed")


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("spaced-token-0123456789abcdef\n", "spaced-token-0123456789abcdef"),
        ("\t  spaced-token-0123456789abcdef \r\n", "spaced-token-0123456789abcdef"),
        ("exactly-16-chars", "exactly-16-chars"),
    ],
)
def test_a_token_from_an_env_or_secret_file_is_stripped_as_clients_tokens_are(token: str, expected: str) -> None:
    """The hub strips what a client sends: a configured token ending in a line break matched no client."""
    config = load_config(environ={"WMHUB_HTTP__TOKEN": token})
    assert config.http.token == expected
    assert token_matches(expected, config.http.token) and token_matches(f"{expected}\n", config.http.token)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("abc" + " " * 13, "at least 16 characters"),  # 16 with the spaces, 3 without
        ("short-token-15ch\n"[1:], "at least 16 characters"),
        (" \n\t ", "is empty once the whitespace around it is removed"),
        ("two-words token-0123456789", "must not contain whitespace or control characters"),
        ("escape-\x1b-token-0123456789", "must not contain whitespace or control characters"),
    ],
)
def test_a_token_no_client_could_send_is_refused_without_printing_it(token: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(environ={"WMHUB_HTTP__TOKEN": token})
    assert str(refused.value).startswith("environment (WMHUB_HTTP__TOKEN): http.token: "), refused.value
    assert message in str(refused.value)
    assert not token.strip() or token.strip()[:6] not in str(refused.value), refused.value


def check_in(
    cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``wmhub run --check`` (``check`` off: ``wmhub run``) run from ``cwd`` (no MQTT, no discovery, any HTTP
    port)."""
    flags = ["--check"] if check else []
    command = [sys.executable, "-m", "hub.cli", "run", *flags, "--mqtt", "off", "--http", "127.0.0.1:0", *args]
    environ = {key: value for key, value in os.environ.items() if not key.startswith("WMHUB_")}
    environ |= {"WMHUB_DISCOVERY__ENABLED": "false", **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=environ, cwd=cwd)


def test_a_home_relative_path_is_the_home_directory_and_check_creates_nothing(tmp_path: Path) -> None:
    """An outside audit: ``data_dir = "~/wmhub"`` made a directory named ``~`` in the working directory (under
    systemd ``/~/wmhub``) and kept the database and token there; ``--check`` created it and said ok."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    path = tmp_path / "wmhub.toml"
    path.write_text('data_dir = "~/hub-data"\n', encoding="utf-8")
    result = check_in(cwd, "--config", str(path), env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert f"data_dir {home / 'hub-data'} will be created" in result.stdout
    assert list(cwd.iterdir()) == [] and list(home.iterdir()) == []  # a check changes nothing
    path.write_text('data_dir = "data"\n[mqtt]\nca_file = "~/ca.pem"\n', encoding="utf-8")
    result = check_in(cwd, "--config", str(path), "--mqtt", "mqtts://127.0.0.1:8883", env={"HOME": str(home)})
    assert result.returncode == 2, result.stderr
    assert f"mqtt.ca_file: {home / 'ca.pem'} is not a readable file" in result.stderr


def test_a_relative_path_in_the_file_is_the_files_folders_and_from_the_environment_the_working_directorys(
    tmp_path: Path,
) -> None:
    folder, cwd = tmp_path / "etc", tmp_path / "cwd"
    folder.mkdir()
    cwd.mkdir()
    path = folder / "wmhub.toml"
    path.write_text('data_dir = "state"\n', encoding="utf-8")
    from_file = check_in(cwd, "--config", str(path))
    assert f"data_dir {folder / 'state'} will be created" in from_file.stdout, from_file.stderr
    from_env = check_in(cwd, "--config", str(path), env={"WMHUB_DATA_DIR": "here"})
    assert "data_dir here will be created" in from_env.stdout, from_env.stderr
    assert list(cwd.iterdir()) == [] and [item.name for item in folder.iterdir()] == ["wmhub.toml"]


def test_check_refuses_a_data_dir_it_could_not_create_without_creating_anything(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("", encoding="utf-8")
    result = check_in(tmp_path, "--data-dir", str(a_file / "sub" / "data"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"command line: data_dir: cannot create {a_file}/sub/data ({a_file} is a file)" in result.stderr


def test_a_byte_order_mark_before_the_file_is_no_mistake(tmp_path: Path) -> None:
    """Windows Notepad writes one at the start of a UTF-8 file."""
    path = tmp_path / "wmhub.toml"
    path.write_bytes(b"\xef\xbb\xbfdevices = ['shure://127.0.0.1:2202']\n")
    result = check_in(tmp_path, "--config", str(path), "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "configuration ok (1 device(s)" in result.stdout


def test_wmhub_config_names_the_file_when_no_flag_does(tmp_path: Path) -> None:
    """A container's environment names the file: it is read, a missing one refused; --config comes first."""
    path = tmp_path / "wmhub.toml"
    path.write_text("devices = ['shure://127.0.0.1:2202']\n", encoding="utf-8")
    data = str(tmp_path / "data")
    read = check_in(tmp_path, "--data-dir", data, env={"WMHUB_CONFIG": str(path)})
    assert read.returncode == 0 and "configuration ok (1 device(s)" in read.stdout, read.stderr
    missing = check_in(tmp_path, "--data-dir", data, env={"WMHUB_CONFIG": str(tmp_path / "absent.toml")})
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert f"environment (WMHUB_CONFIG): {tmp_path}/absent.toml: no such file" in missing.stderr
    flag_first = check_in(
        tmp_path, "--data-dir", data, "--config", str(path), env={"WMHUB_CONFIG": str(tmp_path / "absent.toml")}
    )
    assert flag_first.returncode == 0 and "configuration ok (1 device(s)" in flag_first.stdout, flag_first.stderr


# (environment, the file's text or None for no file, the line's start): an empty path setting, wherever it is given
EMPTY_PATHS = {
    "WMHUB_DATA_DIR=": ({"WMHUB_DATA_DIR": ""}, None, "environment (WMHUB_DATA_DIR): data_dir: is empty"),
    'data_dir = ""': ({}, 'data_dir = ""\n', "<tmp>/wmhub.toml: data_dir: is empty"),
    'data_dir = " "': ({}, 'data_dir = " "\n', "<tmp>/wmhub.toml: data_dir: is empty"),
    "WMHUB_MQTT__CA_FILE=": (
        {"WMHUB_MQTT__CA_FILE": ""},
        None,
        "environment (WMHUB_MQTT__CA_FILE): mqtt.ca_file: is empty",
    ),
    'key_file = ""': ({}, '[mqtt]\nkey_file = ""\n', "<tmp>/wmhub.toml: mqtt.key_file: is empty"),
    "WMHUB_CONFIG=": ({"WMHUB_CONFIG": ""}, None, "environment (WMHUB_CONFIG): is empty"),
}


@pytest.mark.parametrize("start", ["--check", "run"])
@pytest.mark.parametrize("case", list(EMPTY_PATHS))
def test_a_path_given_empty_is_refused_not_taken_as_the_working_directory(
    tmp_path: Path, case: str, start: str
) -> None:
    """An outside audit: ``WMHUB_DATA_DIR=`` (an unset variable in a unit or compose file) or ``data_dir = ""``
    was ``.``: `--check` said ok and the hub wrote its database, token and lock into its working directory
    (``/`` under systemd). ``--data-dir ""`` was refused already; an empty TLS file said ``. is not a readable
    file``, and an empty ``WMHUB_CONFIG`` read no file at all."""
    env, text, expected = EMPTY_PATHS[case]
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    args = ["--mqtt", "mqtts://127.0.0.1:8883"]
    if "data_dir" not in expected:
        args += ["--data-dir", str(tmp_path / "data")]
    if text is not None:
        (tmp_path / "wmhub.toml").write_text(text, encoding="utf-8")
        args += ["--config", str(tmp_path / "wmhub.toml")]
    result = check_in(cwd, *args, env={"HOME": str(home), **env}, check=start == "--check")
    lines = result.stderr.replace(str(tmp_path), "<tmp>").splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"wmhub: configuration error: {expected} (an unset variable?)"), lines[0]
    assert list(cwd.iterdir()) == [] and list(home.iterdir()) == []
    assert not (tmp_path / "data").exists()


BAND_VARIABLE = "WMHUB_FREQUENCY__BANDS__ULXD__"


@pytest.mark.parametrize("file", [None, "[mqtt]\nurl = 'off'\n"])
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {f"{BAND_VARIABLE}LOW_MHZ": "470"},
            f"environment ({BAND_VARIABLE}LOW_MHZ): frequency.bands.ulxd.high_mhz: Field required",
        ),
        (
            {f"{BAND_VARIABLE}LOW_MHZ": "700", f"{BAND_VARIABLE}HIGH_MHZ": "500"},
            f"environment ({BAND_VARIABLE}LOW_MHZ, {BAND_VARIABLE}HIGH_MHZ): frequency.bands.ulxd: low_mhz (700) "
            "must be below high_mhz (500)",
        ),
    ],
)
def test_a_table_from_the_environment_is_blamed_on_the_variables_that_gave_it(
    tmp_path: Path, file: str | None, env: dict[str, str], expected: str
) -> None:
    """An outside audit: a band given in the environment without its high_mhz was blamed on the configuration
    file, which has no [frequency] (or, with no file, on "configuration"), sending the tech to the wrong place;
    a band refused whole named WMHUB_FREQUENCY__BANDS__ULXD, a variable no one set."""
    args = ["--data-dir", str(tmp_path / "data")]
    if file is not None:
        (tmp_path / "wmhub.toml").write_text(file, encoding="utf-8")
        args += ["--config", str(tmp_path / "wmhub.toml")]
    result = check_in(tmp_path, *args, env=env)
    assert (result.returncode, result.stderr) == (2, f"wmhub: configuration error: {expected}\n")
