"""Tables in docs/ that list what the plugins declare, rebuilt from the declarations and compared with the text,
so that a family added or changed cannot leave the documentation behind (an outside audit found the Home
Assistant table wrong for three families and missing others, and model.md giving family names nobody reports);
and examples of what the hub prints or publishes, compared with what it does (another audit ran them)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wmhub_sennheiser.capabilities import CAPABILITIES as SENNHEISER_CAPABILITIES
from wmhub_shure.capabilities import CAPABILITIES as SHURE_CAPABILITIES
from wmhub_shure.families import FAMILIES as SHURE_FAMILIES

from hub.hookspecs import Candidate
from hub.model import Capabilities, Channel, CommandKind, Device
from hub.mqtt.homeassistant import discovery_config
from hub.mqtt.topics import Topics
from tests.mosquitto import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# The columns of docs/mqtt.md's entity table: the family's capabilities, and whether its receivers report a
# name of their own (a receiver name is read-only rather than absent only when there is one to show). Every
# Sennheiser protocol reports the device's name; of Shure's, the families whose device table fills "name".
Column = tuple[Capabilities, bool]
ABSENT = "\N{EN DASH}"  # the table's "it does not"


def _shure_column(key: str) -> tuple[str, Column]:
    family = SHURE_FAMILIES[key]
    reports_name = any(param.field == "name" for param in family.device_params.values())
    return family.label, (SHURE_CAPABILITIES[key], reports_name)


def _columns() -> dict[str, Column]:
    sennheiser = {
        label: (capabilities, True) for label, capabilities in SENNHEISER_CAPABILITIES.items() if label != "tcc-m"
    }
    # Spectera, TCC-M and a plain SSCv2 device declare the same, shown as one column
    assert SENNHEISER_CAPABILITIES["tcc-m"] == SENNHEISER_CAPABILITIES["spectera"] == SENNHEISER_CAPABILITIES["sscv2"]
    sennheiser["SSCv2 (Spectera, TCC-M)"] = sennheiser.pop("spectera")
    del sennheiser["sscv2"]
    sennheiser["EW-DX secure (SSCv2)"] = sennheiser.pop("ew-dx")
    return dict(_shure_column(key) for key in SHURE_FAMILIES) | sennheiser


def _exists(component: str) -> Callable[[dict[str, Any]], str]:
    return lambda components: "✓" if component in components else ABSENT


def _name_cell(component: str) -> Callable[[dict[str, Any]], str]:
    def cell(components: dict[str, Any]) -> str:
        entity = components.get(component)
        if entity is None:
            return ABSENT
        return f"≤{entity['max']}" if entity["platform"] == "text" else "read-only†"

    return cell


ROWS: dict[str, Callable[[dict[str, Any]], str]] = {
    "Battery": _exists("ch1_battery_percent"),
    "Battery bars": _exists("ch1_battery_bars"),
    "Battery runtime": _exists("ch1_battery_runtime_min"),
    "RF level*": _exists("ch1_rf_dbm"),
    "RF quality*": _exists("ch1_rf_quality_percent"),
    "Audio level*": _exists("ch1_audio_dbfs"),
    "Frequency": _exists("ch1_frequency_mhz"),
    "Transmitter model": _exists("ch1_tx_model"),
    "Transmitter present": _exists("ch1_tx_present"),
    "Audio clip": _exists("ch1_audio_peak"),
    "Name": _name_cell("ch1_name"),
    "Mute": _exists("ch1_mute"),
    "Gain": _exists("ch1_gain"),
    "Identify": _exists("ch1_identify"),
    "Receiver name": _name_cell("receiver_name"),
    "Receiver identify": _exists("identify"),
}


def _entity_table() -> list[list[str]]:
    columns = _columns()
    components = {}
    for label, (capabilities, reports_name) in columns.items():
        device = Device(
            id="x-1",
            vendor="x",
            family=label,
            name="RX" if reports_name else None,
            host="127.0.0.1",
            port=1,
            channels=[Channel(index=1)],
            capabilities=capabilities,
        )
        components[label] = discovery_config(device, Topics("wmhub", "hub", "homeassistant"), 1)["components"]
    header = ["Entity", *columns]
    return [header] + [[row, *(cell(components[label]) for label in columns)] for row, cell in ROWS.items()]


def _markdown_table(text: str, first_header_cell: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header_cell} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not set(line) <= set("|-: "):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_the_home_assistant_entity_table_is_what_the_discovery_configs_hold() -> None:
    documented = _markdown_table((DOCS / "mqtt.md").read_text(encoding="utf-8"), "Entity | ULX-D")
    assert documented == _entity_table(), "docs/mqtt.md's entity table: regenerate it from _entity_table()"


def test_model_md_lists_every_family_value_the_plugins_report() -> None:
    model = (DOCS / "model.md").read_text(encoding="utf-8")
    declared = set(SHURE_FAMILIES) | set(SENNHEISER_CAPABILITIES)
    missing = sorted(family for family in declared if f"`{family}`" not in model)
    assert not missing, f"docs/model.md does not name these family values: {missing}"


def _wmhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=60)


def _table_row(text: str, first_cell: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {first_cell} |"))


def test_readme_names_every_device_url_scheme_the_plugins_offer() -> None:
    """An outside audit: `wmhub plugins` offered shure-uhfr:// and README.md's device URLs left it out."""
    listing = _wmhub("plugins")
    assert listing.returncode == 0, listing.stderr
    schemes = re.findall(r"^\s+([a-z0-9-]+://)", listing.stdout, re.MULTILINE)
    assert "shure://" in schemes and "sennheiser-ssc2://" in schemes, listing.stdout
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert [scheme for scheme in schemes if f"`{scheme}" not in readme] == []


def test_deployment_md_shows_what_wmhub_prints(tmp_path: Path) -> None:
    """An outside audit ran deployment.md's commands: --version lists the plugins in name order, and the
    refused mqtt.url says "of a URL" after the flag's source; the page had another order and wording."""
    deployment = (DOCS / "deployment.md").read_text(encoding="utf-8")
    versions = _wmhub("--version").stdout.splitlines()
    paragraph = next(line for line in deployment.split("\n\n") if "`wmhub --version` prints" in line)
    documented = re.findall(r"`(wmhub[a-z-]*) \d", paragraph)
    assert documented == [line.split()[0] for line in versions]
    refused = _wmhub(
        "run", "--check", "--data-dir", str(tmp_path), "--http", f"127.0.0.1:{free_port()}",
        "--mqtt", "mqtt://u:secret@127.0.0.1:notaport",
    )  # fmt: skip
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.strip() in deployment


def test_mqtt_md_requests_table_says_what_the_hub_answers() -> None:
    mqtt = (DOCS / "mqtt.md").read_text(encoding="utf-8")
    candidates = _table_row(mqtt, "`candidates`")
    assert [field.name for field in dataclasses.fields(Candidate) if f'"{field.name}"' not in candidates] == []
    # the families that meter at a rate of their own, named as the entity table names them
    meter_rate = _table_row(mqtt, "`meter_rate`")
    named = meter_rate.split("its own schedule: ", 1)[1].split(";", 1)[0]
    without = {
        label for label, (capabilities, _) in _columns().items() if CommandKind.METER_RATE not in capabilities.commands
    }
    assert set(re.split(r", (?![^(]*\))", named)) == without


def test_mqtt_md_home_assistant_example_is_what_the_hub_publishes() -> None:
    """An outside audit: the example's Name template lacked the cut to the family's length, and the ids
    Home Assistant takes for the entity ids (object_id, default_entity_id) were missing."""
    mqtt = (DOCS / "mqtt.md").read_text(encoding="utf-8")
    capabilities, _ = _columns()["ULX-D"]
    device = Device(
        id="shure-demo-ulxd4q", vendor="shure", family="ulxd", name="RX964", host="127.0.0.1", port=1,
        channels=[Channel(index=1)], capabilities=capabilities,
    )  # fmt: skip
    components = discovery_config(device, Topics("wmhub", "demo", "homeassistant"), 1)["components"]
    for component in ("ch1_name", "ch1_battery_percent"):
        shown = {
            key: value
            for key, value in components[component].items()
            if key != "pattern" and not isinstance(value, list | dict)  # the pattern and lists are cut short
        }
        missing = [
            f'"{key}":{json.dumps(value)}' for key, value in shown.items() if f'"{key}":{json.dumps(value)}' not in mqtt
        ]
        assert missing == [], f"docs/mqtt.md's {component} example"


def print_entity_table() -> None:
    """``python -c 'from tests.test_docs_tables import print_entity_table; print_entity_table()'``: the
    table to paste into docs/mqtt.md."""
    rows = _entity_table()
    print("\n".join(f"| {' | '.join(row)} |" for row in [rows[0], ["---"] * len(rows[0]), *rows[1:]]))


# `hub.<module>.<name>` in docs/plugins.md (`hub.drivers.command_deadline()`, `hub.model.CONFIRMED_VALUE`); not
# `hub.device.<vendor>`, a logger's name
_PLUGIN_API_NAME = re.compile(r"`(hub(?:\.[A-Za-z_]\w*)+)")
_LOGGER_NAMES = frozenset({"hub.device"})


def _resolves(name: str) -> bool:
    """Whether ``name`` is a module of hub, or the longest leading part of it that is one has the rest."""
    parts = name.split(".")
    for split in range(len(parts), 1, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_every_hub_name_plugins_md_gives_plugin_authors_can_be_imported() -> None:
    """An outside audit: docs/plugins.md told plugin authors to keep an Endpoint's URL out of their logs with
    `hub.drivers.redact_url`, which did not exist: a plugin importing it as told failed to load, and wmhub
    loaded none of its drivers."""
    named = set(_PLUGIN_API_NAME.findall((DOCS / "plugins.md").read_text())) - _LOGGER_NAMES
    assert "hub.drivers.redact_url" in named and len(named) > 10, named
    assert not [name for name in sorted(named) if not _resolves(name)], "docs/plugins.md names what hub lacks"
    from hub.drivers import redact_url

    assert redact_url("acme://admin:s3cret@10.0.0.5?password=s3cret&verify=false") == (
        "acme://admin:***@10.0.0.5?password=***&verify=false"
    )


COMMANDS = ("run", "fleet", "plugins", "devices", "discover")


def _help_of_each_flag(command: str) -> dict[str, str]:
    """Each long flag `wmhub <command> --help` lists (but --help), with its help text ("" when it has none)."""
    listing = _wmhub(command, "--help")
    assert listing.returncode == 0, listing.stderr
    options = listing.stdout.partition("\noptions:\n")[2]
    flags = {}
    for entry in re.split(r"\n(?=  -)", options.strip("\n")):
        # argparse puts two spaces or more, or a line break, between a flag (with its value) and its help
        invocation, _, described = entry.strip().partition("  ")
        for flag in re.findall(r"--[a-z][a-z-]*", invocation):
            flags[flag] = " ".join(described.split())
    flags.pop("--help")
    return flags


def _documented_lines() -> list[str]:
    """The lines of README.md and docs/*.md, a shell line continued with a backslash joined to the next."""
    texts = [(ROOT / "README.md").read_text(encoding="utf-8")]
    texts += [path.read_text(encoding="utf-8") for path in sorted(DOCS.glob("*.md"))]
    return [line for text in texts for line in re.sub(r"\\\n\s*", " ", text).splitlines()]


def test_every_flag_of_every_command_has_a_help_text_and_a_line_of_the_docs() -> None:
    """An outside audit: `wmhub devices --config/--http`, `discover --config` and `fleet --config/--data-dir/
    --hub-id` were documented nowhere (an operator whose hub is not on 127.0.0.1:8058 could not learn how
    `devices` finds it), and five flags had no help text. A flag is documented by a line that names it with
    its command (`wmhub devices [--json] [--config FILE]`)."""
    lines = _documented_lines()
    flags = {command: _help_of_each_flag(command) for command in COMMANDS}
    without_help = [
        f"wmhub {command} {flag}" for command in COMMANDS for flag, text in flags[command].items() if not text
    ]
    undocumented = [
        f"wmhub {command} {flag}"
        for command in COMMANDS
        for flag in flags[command]
        if not any(f"wmhub {command}" in line and flag in line for line in lines)
    ]
    assert not without_help and not undocumented, f"no help text: {without_help}; in no docs line: {undocumented}"


def test_the_default_data_dir_is_the_one_help_and_readme_give(tmp_path: Path) -> None:
    """An outside audit: where the database and API token go unless `data_dir` says was written nowhere."""
    home = tmp_path / "home"
    checked = subprocess.run(
        [sys.executable, "-m", "hub.cli", "run", "--check", "--mqtt", "off", "--http", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "WMHUB_DISCOVERY__ENABLED": "false"},
    )
    assert checked.returncode == 0, checked.stderr
    created = re.search(r"data_dir (\S+) will be created", checked.stdout)
    assert created is not None, checked.stdout
    default = "~/" + str(Path(created[1]).relative_to(home))
    assert default in _help_of_each_flag("run")["--data-dir"]
    assert f"`{default}`" in (ROOT / "README.md").read_text(encoding="utf-8")
