"""Who may control the mics over MQTT, and what a message may be: tried from outside, as someone on the LAN.

The broker is a real Mosquitto running the venue configuration shipped in deploy/mosquitto (its ACL file
verbatim, its settings with this test's port and paths), the hub logs in as the ``wmhub`` user of that
ACL, and the device is the documented example plugin's receiver over TCP on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.config import ConfigError, load_config
from hub.testing import eventually
from tests.mosquitto import MosquittoBroker, MqttProbe, TestBroker, find_mosquitto
from tests.reliability_report import record_check
from tests.test_faults_startup import running_hub as wmhub_process
from tests.test_mqtt_bridge import example_receiver, listening_to, online_device, receiver, running_hub, watching_hub

__all__ = ["receiver"]  # the fixture, imported so pytest finds it here

VENUE = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto"
USERS = {"wmhub": "hub-pass-1", "homeassistant": "ha-pass-2"}
AREA = "MQTT boundary"


class VenueBroker(MosquittoBroker):
    """Mosquitto with deploy/mosquitto/mosquitto.conf: its ACL file as shipped, its port and paths this test's.
    Its password file holds ``users``, or without them is the one already in its directory."""

    async def _config(self) -> str:
        passwords = self.directory / "passwords"
        if self.users:
            passwords.write_text("".join(f"{user}:{password}\n" for user, password in self.users.items()))
            process = await asyncio.create_subprocess_exec("mosquitto_passwd", "-U", str(passwords))
            assert await process.wait() == 0, "mosquitto_passwd could not hash the test passwords"
        replaced = {
            "listener": f"listener {self.port} 127.0.0.1",
            "password_file": f"password_file {passwords}",
            "acl_file": f"acl_file {VENUE / 'acl'}",
            "persistence": "persistence false",
            "persistence_location": None,
            "log_dest": None,
        }
        lines = [f"user {getpass.getuser()}", "log_type all"]
        for line in (VENUE / "mosquitto.conf").read_text().splitlines():
            key = line.split(" ", 1)[0]
            if key in replaced:
                line = replaced[key] or ""
            lines.append(line)
        return "\n".join(lines) + "\n"

    def log_text(self) -> str:
        return (self.directory / "mosquitto.log").read_text(errors="replace")


def run_password_step(passwords: Path, dot_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """deploy/mosquitto's password step as the compose broker runs it at every start: POSIX sh, with the
    ``.env`` values in its environment, writing the password file ``passwords``."""
    return subprocess.run(
        ["sh", str(VENUE / "passwords.sh"), str(passwords)],
        env={"PATH": os.environ["PATH"], **dot_env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@contextlib.asynccontextmanager
async def venue_broker(dot_env: dict[str, str] | None = None) -> AsyncIterator[VenueBroker]:
    """The venue broker with the users of USERS, or with ``dot_env`` (docker-compose.yml's ``.env``) the
    password file its own password step writes from those values."""
    executable = find_mosquitto()
    if executable is None:
        pytest.fail("the venue broker test needs Mosquitto (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="wmhub-venue-") as directory:
        broker = VenueBroker(executable, Path(directory), users=None if dot_env else USERS)
        if dot_env:
            written = run_password_step(Path(directory) / "passwords", dot_env)
            assert written.returncode == 0, f"the password step refused the .env values: {written.stderr}"
        await broker.start()
        try:
            yield broker
        finally:
            await broker.stop()


async def read_retained(probe: MqttProbe, topic: str) -> Any:
    """Subscribe without the probe's marker topic (the ACL lets no reader publish one) and wait for the
    receiver's name in the retained state, which also shows the subscription is in place."""
    probe.client.subscribe(topic, 1)
    return await probe.json(topic, lambda state: state["name"] is not None)


async def test_an_anonymous_client_reads_everything_and_controls_nothing(tmp_path: Path, receiver: str) -> None:
    async with (
        venue_broker() as broker,
        running_hub(
            broker, tmp_path, [receiver], base="wmhub", url=f"mqtt://wmhub:{USERS['wmhub']}@{broker.host}:{broker.port}"
        ) as hub,
        MqttProbe(broker, "anonymous-on-the-lan") as anonymous,
        MqttProbe(broker, "home-assistant", "homeassistant", USERS["homeassistant"]) as home_assistant,
    ):
        device_id = await online_device(hub)
        await listening_to(hub, device_id)
        channel_topic = f"wmhub/devices/{device_id}/channels/1"
        assert (await read_retained(anonymous, channel_topic))["name"] == "Lead"  # reading is open
        anonymous.client.subscribe("wmhub/hubs/hub1/response/#", 1)
        anonymous.publish(f"{channel_topic}/set", {"name": "Hijack", "transaction": "anonymous"})
        anonymous.publish("wmhub/hubs/hub1/request/devices", {"transaction": "anonymous"})
        await eventually(lambda: broker.log_text().count("Denied PUBLISH from anonymous-on-the-lan") >= 2, 5, "denials")

        home_assistant.client.subscribe("wmhub/hubs/hub1/response/set", 1)
        await read_retained(home_assistant, channel_topic)
        answer = await home_assistant.request("wmhub/hubs/hub1/response/set", f"{channel_topic}/set", {"name": "Vox 1"})
        assert answer["status"] == "ok"
        await anonymous.json(channel_topic, lambda state: state["name"] == "Vox 1")
        assert not [payload for topic, payload in anonymous.messages if b'"anonymous"' in payload]
        assert hub.store.devices[device_id].channels[0].name == "Vox 1"
    record_check(
        AREA,
        "deploy/mosquitto ACL: an anonymous client publishes set and a hub request; Home Assistant's user sets",
        "anonymous reads every state topic, its set and request are denied by the broker (never reach the hub); "
        "Home Assistant's set is applied and answered; the hub publishes as its own user",
    )


COMPOSE = VENUE.parent.parent / "docker-compose.yml"
HOME_ASSISTANT_PASSWORD = "ha-pass-2"
# (WMHUB_MQTT_PASSWORD in .env, the password it stands for): the value goes both into the broker's password
# file and into the hub's URL, so it is written as in a URL. The first is what `openssl rand -base64` makes
# (an outside audit: with '/' encoded as docker-compose.yml said, the broker held "%2F" and refused the hub
# forever; written raw, the hub refused its URL without saying why)
COMPOSE_PASSWORDS = {
    "'/' encoded, '+', '=', '@' and ':' as they are": ("Gen%2FPw7+x=@:", "Gen/Pw7+x=@:"),
    "every character of the same password encoded": ("Gen%2FPw7%2Bx%3D%40%3A", "Gen/Pw7+x=@:"),
    "the rest of printable ASCII, encoded where a URL needs it": (
        "Sp%20ce%25%23%3F%2C%5B%5D%5C\\!$&'()*;~\"^{}|<>`",
        "Sp ce%#?,[]\\\\!$&'()*;~\"^{}|<>`",
    ),
}


def compose_hub(dot_env: dict[str, str], broker: TestBroker) -> tuple[list[str], dict[str, str]]:
    """The hub's command arguments after ``run`` and its environment, as docker-compose.yml gives them with
    these ``.env`` values; the broker's published port 1883 is this test broker's port."""
    hub_service = COMPOSE.read_text(encoding="utf-8").split("\n  wmhub:\n", 1)[1]
    command = json.loads(re.findall(r"^    command: (\[.*\])$", hub_service, re.MULTILINE)[0])
    environment = {
        key: re.sub(r"\$\{(\w+)\}", lambda variable: dot_env[variable[1]], value)
        for key, value in re.findall(r"^      (WMHUB_\w+): (\S+)$", hub_service, re.MULTILINE)
    }
    assert "@127.0.0.1:1883" in environment["WMHUB_MQTT__URL"] and command[0] == "run"
    environment["WMHUB_MQTT__URL"] = environment["WMHUB_MQTT__URL"].replace(
        "@127.0.0.1:1883", f"@{broker.host}:{broker.port}"
    )
    return command[1:], environment


@pytest.mark.parametrize("case", list(COMPOSE_PASSWORDS))
async def test_the_compose_password_logs_the_hub_in_to_the_compose_broker(tmp_path: Path, case: str) -> None:
    """docker compose, without Docker: deploy/mosquitto's password step and its broker configuration, and the
    hub started with the command and environment docker-compose.yml gives it, from one ``.env`` value."""
    dot_env_value, password = COMPOSE_PASSWORDS[case]
    dot_env = {"WMHUB_MQTT_PASSWORD": dot_env_value, "HOMEASSISTANT_MQTT_PASSWORD": HOME_ASSISTANT_PASSWORD}
    async with venue_broker(dot_env) as broker:
        args, environment = compose_hub(dot_env, broker)
        state_topic = f"wmhub/hubs/{environment['WMHUB_HUB_ID']}/state"
        with wmhub_process(tmp_path / "data", *args, env=environment, mqtt_off=False) as hub:
            async with MqttProbe(broker, "anonymous-on-the-lan") as anonymous:
                anonymous.client.subscribe(state_topic, 1)
                try:  # only the wmhub login may publish there (deploy/mosquitto/acl)
                    await anonymous.json(state_topic, lambda state: state["state"] == "online", timeout=30)
                except AssertionError:
                    pytest.fail(f"the hub never published as wmhub; its log: {hub.stop()[-2000:]}")
        # the broker holds the password the value stands for: an operator's own client logs in with it
        async with MqttProbe(broker, "operator-as-wmhub", "wmhub", password):
            pass
    record_check(
        AREA,
        f"docker compose's broker and hub from one .env WMHUB_MQTT_PASSWORD ({case})",
        "the broker's password file and the hub's URL hold the same password: the hub logs in and publishes",
    )


@pytest.mark.parametrize(
    "value",
    [
        "Gen/LEAKPW7+x=",
        "LEAKPW?",
        "LEAKPW#1",
        "LEAKPW two",
        "LEAKPW,2",
        "LEAKPW[3]",
        "50%offLEAKPW",
        "LEAKPW%4",
        "LEAKPW%0A",  # a line break: not a character the .env value can hand on encoded
    ],
)
def test_a_compose_password_its_url_cannot_carry_stops_the_broker_in_one_line(tmp_path: Path, value: str) -> None:
    """Written raw, each of these would make the hub refuse its URL or read another password than the
    broker: the broker does not start, and says what to write instead without showing the password."""
    passwords = tmp_path / "passwords"
    done = run_password_step(
        passwords, {"WMHUB_MQTT_PASSWORD": value, "HOMEASSISTANT_MQTT_PASSWORD": HOME_ASSISTANT_PASSWORD}
    )
    lines = done.stderr.splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert lines[0].startswith("WMHUB_MQTT_PASSWORD ") and "%2F" in lines[0] and "openssl rand -hex" in lines[0]
    assert "LEAKPW" not in done.stderr + done.stdout
    assert not passwords.exists()


async def test_requests_that_change_the_watched_devices_are_off_by_default_and_no_token_is_taken(
    mqtt_broker: TestBroker, tmp_path: Path, receiver: str
) -> None:
    second_server, second_url = await example_receiver("EX0002", "Second")
    async with second_server, watching_hub(mqtt_broker, tmp_path, receiver) as (hub, probe, base, device_id):
        await probe.subscribe(f"{base}/hubs/hub1/response/#")

        async def request(command: str, payload: Any) -> Any:
            return await probe.request(
                f"{base}/hubs/hub1/response/{command}", f"{base}/hubs/hub1/request/{command}", payload
            )

        for command, payload in (
            ("device/add", {"url": second_url}),
            ("device/remove", {"id": device_id}),
            ("candidate/approve", {"url": second_url}),
        ):
            refused = await request(command, payload)
            assert refused["status"] == "error" and "mqtt.admin" in refused["error"]
        assert list(hub.store.devices) == [device_id] and len(hub.devices.by_url) == 1
        # the API token is no MQTT credential: a request carrying one is refused, not checked
        with_token = await request("devices", {"token": hub.api_token})
        assert with_token["status"] == "error" and "token: unknown key" in with_token["error"]
        set_topic = f"{base}/devices/{device_id}/channels/1/set"
        rename = await probe.request(f"{base}/hubs/hub1/response/set", set_topic, {"name": "Stays on"})
        assert rename["status"] == "ok"
    with pytest.raises(ConfigError, match="require_token was removed"):
        load_config(overrides={"mqtt": {"require_token": True}})
    record_check(
        AREA,
        "device/add, device/remove, candidate/approve over MQTT with default settings; a payload with the API token",
        "each refused naming mqtt.admin, nothing added or removed; 'token: unknown key'; channel control still "
        "works; mqtt.require_token in a config is a config error",
    )


async def test_an_oversized_payload_is_refused_unread_and_never_echoed(
    mqtt_broker: TestBroker, tmp_path: Path, receiver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with watching_hub(mqtt_broker, tmp_path, receiver) as (hub, probe, base, device_id):
        await probe.subscribe(f"{base}/hubs/hub1/response/#")
        set_topic = f"{base}/devices/{device_id}/channels/1/set"
        probe.publish(set_topic, orjson.dumps({"name": "y" * 5_000_000}))
        refused = await probe.json(f"{base}/hubs/hub1/response/set", timeout=10)
        assert refused["status"] == "error" and "limit is 65536" in refused["error"]
        under_the_cap = await probe.request(f"{base}/hubs/hub1/response/set", set_topic, {"name": "z" * 60_000})
        assert under_the_cap["status"] == "error" and "name:" in under_the_cap["error"]
        request_topic = f"{base}/hubs/hub1/request/device/remove"
        long_id = await probe.request(f"{base}/hubs/hub1/response/device/remove", request_topic, {"id": "x" * 60_000})
        assert long_id["status"] == "error"
        # a request name of 5,000 characters is not answered (its answer topic would echo it); the next one is
        probe.publish(f"{base}/hubs/hub1/request/{'n' * 5000}", {})
        await probe.request(f"{base}/hubs/hub1/response/info", f"{base}/hubs/hub1/request/info", {})
        assert max(len(topic) for topic, _ in probe.messages) < 200
        assert hub.store.devices[device_id].channels[0].name == "Lead"
        longest_response = max(len(payload) for topic, payload in probe.messages if "/response/" in topic)
    longest_log = max(len(record.getMessage()) for record in caplog.records if record.name.startswith("hub"))
    assert longest_response < 1000 and longest_log < 1000
    record_check(
        AREA,
        'set {"name": 5 MB}; set {"name": 60,000 characters}; device/remove with a 60,000-character id; '
        "a request named with 5,000 characters",
        f"5 MB refused unread (limit mqtt.max_payload_bytes = 64 KiB); the others refused by length, the long "
        f"request name not answered (no 5,000-character response topic); longest "
        f"response {longest_response} bytes, longest log line {longest_log} characters; name unchanged",
    )


async def test_a_set_of_thousands_of_unknown_keys_is_answered_and_logged_in_a_few_hundred_characters(
    mqtt_broker: TestBroker, tmp_path: Path, receiver: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A security audit: a set of 64 KB with 6,500 unknown keys was answered on response/set (to every
    subscriber) and logged with every key named, 129 KB each. The answer names a few and counts the rest; so
    does a hub request's."""
    body: dict[str, Any] = {f"k{n}": 0 for n in range(6500)}
    async with watching_hub(mqtt_broker, tmp_path, receiver) as (hub, probe, base, device_id):
        await probe.subscribe(f"{base}/hubs/hub1/response/#")
        set_topic = f"{base}/devices/{device_id}/channels/1/set"
        refused = await probe.request(f"{base}/hubs/hub1/response/set", set_topic, body)
        request_topic = f"{base}/hubs/hub1/request/devices"
        request_refused = await probe.request(f"{base}/hubs/hub1/response/devices", request_topic, body)
        assert hub.store.devices[device_id].channels[0].name == "Lead"
        longest_response = max(len(payload) for topic, payload in probe.messages if "/response/" in topic)
    longest_log = max(len(record.getMessage()) for record in caplog.records if record.name.startswith("hub"))
    for answer in (refused, request_refused):
        assert answer["status"] == "error", answer
        assert answer["error"].startswith("k0: unknown key; k1: unknown key;"), answer
        assert answer["error"].endswith("; and 6495 more keys"), answer
    assert len(orjson.dumps(body)) > 60_000 and longest_response < 1000 and longest_log < 1000
    record_check(
        AREA,
        "set and hub request of 64 KB with 6,500 unknown keys",
        f"refused naming 5 keys and counting the rest; longest response {longest_response} bytes, longest log "
        f"line {longest_log} characters",
    )


async def test_mqtt_booleans_are_refused_like_rest_and_the_receiver_is_unchanged(
    mqtt_broker: TestBroker, tmp_path: Path, receiver: str
) -> None:
    async with watching_hub(mqtt_broker, tmp_path, receiver) as (hub, probe, base, device_id):
        await probe.subscribe(f"{base}/hubs/hub1/response/#")
        set_topic = f"{base}/devices/{device_id}/channels/1/set"
        answers = []
        for value in ("yes", "on", "1", 0, 1.0):
            answers.append(
                await probe.request(f"{base}/hubs/hub1/response/set", set_topic, {"muted": value, "name": "X"})
            )
        assert all(answer["status"] == "error" and "muted" in answer["error"] for answer in answers)
        assert all("results" not in answer["data"] for answer in answers)  # nothing was sent
        assert hub.store.devices[device_id].channels[0].name == "Lead"
    record_check(
        AREA,
        'set {"muted": "yes" | "on" | "1" | 0 | 1.0} (with a name in the same message)',
        "refused before anything is sent ('muted: Input should be a valid boolean or ... toggle'); "
        "the name in the same message is not applied either",
    )


def test_the_acl_in_the_docs_is_the_shipped_one_line_for_line() -> None:
    """An outside audit copied docs/mqtt.md's ACL snippet: its comments at the end of a "user" line became
    part of the user's name in Mosquitto, so the hub and Home Assistant had no rights at all. The snippet
    must say what deploy/mosquitto/acl (tested above against a real Mosquitto) says."""
    docs = (VENUE.parent.parent / "docs" / "mqtt.md").read_text(encoding="utf-8")
    snippet = docs.split("```conf\n# acl:", 1)[1].split("```", 1)[0].split("\n", 1)[1]

    def rules(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]

    shipped = rules((VENUE / "acl").read_text(encoding="utf-8"))
    assert rules(snippet) == shipped[: len(rules(snippet))]
