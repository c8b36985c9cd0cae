"""The demo against a real Home Assistant, as a home-automation user would run it (see scripts/ha-check.sh).

Starts Mosquitto and Home Assistant on loopback (free ports, a throw-away config directory), onboards a
user and sets up the MQTT integration through Home Assistant's own config-flow REST API, then runs
``wmhub run --demo`` three times on the same broker and data directory and checks what Home Assistant
made of it: its device and entity registries (websocket API), entity states (REST), and the retained
discovery topics on the broker. Prints one line per check and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wmhub_shure.simulator.replay import ReplayDevice, Transcript  # noqa: E402

from hub.mqtt.brokers import BrokerAddress  # noqa: E402
from hub.mqtt.client import MqttClient  # noqa: E402
from hub.mqtt.homeassistant import entity_object_id  # noqa: E402

HUB_ID = "hacheck"
TRANSCRIPTS = REPO / "plugins" / "shure" / "tests" / "transcripts"
RECEIVERS = 12  # the demo fleets of both plugins (with a P10T, an SR IEM G4 and a CHG 70N)
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(check: Callable[[], Awaitable[T | None]], timeout: float, what: str, every: float = 0.5) -> T:
    """Call ``check`` until it returns something truthy; raise TimeoutError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} (after {timeout:g} s)")
        await asyncio.sleep(every)


class Report:
    def __init__(self) -> None:
        self.failures = 0

    def check(self, ok: bool, text: str) -> bool:
        print(f"{'PASS' if ok else 'FAIL'}  {text}", flush=True)
        self.failures += not ok
        return ok

    def note(self, text: str) -> None:
        print(f"      {text}", flush=True)


class HomeAssistant:
    """REST and websocket access with the onboarded user's token."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.token = ""
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = 0

    async def onboard(self) -> None:
        client_id = f"{self.base}/"
        user = {"client_id": client_id, "name": "check", "username": "check", "password": "wmhub-check-1"}
        user["language"] = "en"
        async with self.http.post(f"{self.base}/api/onboarding/users", json=user) as response:
            code = (await response.json())["auth_code"]
        form = {"grant_type": "authorization_code", "code": code, "client_id": client_id}
        async with self.http.post(f"{self.base}/auth/token", data=form) as response:
            self.token = (await response.json())["access_token"]

    async def rest(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.request(method, f"{self.base}{path}", json=body, headers=headers) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text) if text else None
            except json.JSONDecodeError:
                return response.status, text

    async def setup_mqtt(self, port: int) -> dict[str, Any]:
        status, flow = await self.rest("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        assert status == 200, flow
        status, result = await self.rest(
            "POST", f"/api/config/config_entries/flow/{flow['flow_id']}", {"broker": "127.0.0.1", "port": port}
        )
        assert status == 200 and result.get("type") == "create_entry", result
        return dict(result)

    async def ws(self, message: dict[str, Any]) -> Any:
        if self._ws is None:
            self._ws = await self.http.ws_connect(f"{self.base}/api/websocket")
            await self._ws.receive_json()  # auth_required
            await self._ws.send_json({"type": "auth", "access_token": self.token})
            assert (await self._ws.receive_json())["type"] == "auth_ok"
        self._ids += 1
        await self._ws.send_json({"id": self._ids, **message})
        while True:
            answer = await self._ws.receive_json()
            if answer.get("id") == self._ids:
                assert answer.get("success"), answer
                return answer["result"]

    async def state_changes_per_second(self, entity_ids: set[str], seconds: float) -> float:
        """How many state changes of ``entity_ids`` Home Assistant writes per second (what its recorder stores)."""
        await self.ws({"type": "subscribe_events", "event_type": "state_changed"})
        assert self._ws is not None
        subscription, changes = self._ids, 0
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await self._ws.receive_json(timeout=left)
            except TimeoutError:
                break
            if message.get("id") == subscription and message.get("type") == "event":
                changes += message["event"]["data"]["entity_id"] in entity_ids
        await self.ws({"type": "unsubscribe_events", "subscription": subscription})
        return changes / seconds

    async def wmhub_devices(self) -> dict[str, list[dict[str, Any]]]:
        """Device registry entries with a wmhub identifier, by identifier (more than one would be a ghost)."""
        devices = await self.ws({"type": "config/device_registry/list"})
        found: dict[str, list[dict[str, Any]]] = {}
        for device in devices:
            for domain, identifier in device["identifiers"]:
                if domain == "mqtt" and identifier.startswith("wmhub_"):
                    found.setdefault(identifier, []).append(device)
        return found

    async def entities(self, device_ids: set[str]) -> list[dict[str, Any]]:
        entries = await self.ws({"type": "config/entity_registry/list"})
        return [entry for entry in entries if entry.get("device_id") in device_ids]

    async def states(self) -> dict[str, str]:
        status, states = await self.rest("GET", "/api/states")
        assert status == 200, states
        return {state["entity_id"]: state["state"] for state in states}


class Probe:
    """An MQTT client of the check's own: set topics and the hub's answers."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.client = MqttClient(BrokerAddress("127.0.0.1", port), f"ha-check-{os.getpid()}", on_message=self._seen)

    def _seen(self, topic: str, payload: bytes, retained: bool) -> None:
        self.messages.append((topic, payload))

    async def subscribe(self, topic_filter: str) -> int:
        """Subscribe and wait until the broker has delivered the retained messages (they come before a marker
        published after the subscription); returns where in ``messages`` they start."""
        before = len(self.messages)
        marker = f"ha-check/marker/{time.monotonic_ns()}"
        self.client.subscribe(topic_filter, 1)
        self.client.subscribe(marker, 1)
        self.client.publish(marker, b"1", 1)

        async def marked() -> bool:
            return any(topic == marker for topic, _ in self.messages[before:])

        await until(marked, 10, f"the subscription to {topic_filter}", every=0.05)
        self.client.unsubscribe(marker)
        return before

    async def retained(self, topic_filter: str) -> dict[str, bytes]:
        """Every retained message under ``topic_filter`` (a ``prefix/#`` filter)."""
        before = await self.subscribe(topic_filter)
        self.client.unsubscribe(topic_filter)
        prefix = topic_filter.removesuffix("#")
        return {topic: payload for topic, payload in self.messages[before:] if payload and topic.startswith(prefix)}


async def start_hub(
    data_dir: Path, mqtt_port: int, http_port: int, log: Path, hub_id: str = HUB_ID, devices: tuple[str, ...] = ()
) -> asyncio.subprocess.Process:
    """The demo, or (given ``devices``) a hub watching those devices only."""
    receivers = [arg for url in devices for arg in ("--device", url)] or ["--demo"]
    return await asyncio.create_subprocess_exec(
        str(REPO / ".venv/bin/python"), "-m", "hub.cli", "run", *receivers, "--mqtt", f"mqtt://127.0.0.1:{mqtt_port}",
        "--http", f"127.0.0.1:{http_port}", "--data-dir", str(data_dir), "--hub-id", hub_id,
        stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT, cwd=REPO,
        env={**os.environ, "WMHUB_DISCOVERY__ENABLED": "false"},
    )  # fmt: skip


async def stop(process: asyncio.subprocess.Process, timeout: float = 30) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


# Home Assistant's loggers whose errors are about what the hub publishes: the MQTT integration, and the
# templates of its entities ("'value_json' is undefined" for an entity rendering an empty payload)
HUB_ERROR_LOGGERS = ("homeassistant.components.mqtt", "homeassistant.helpers.template")


def about_the_hub(line: str) -> bool:
    """A log line of one of HUB_ERROR_LOGGERS, or of any logger that names MQTT or wmhub."""
    return any(f"[{logger}" in line for logger in HUB_ERROR_LOGGERS) or any(
        word in line.lower() for word in ("mqtt", "wmhub")
    )


async def hub_devices(http: aiohttp.ClientSession, port: int) -> list[dict[str, Any]]:
    async with http.get(f"http://127.0.0.1:{port}/api/v1/devices?limit=1000") as response:
        return list((await response.json())["items"]) if response.status == 200 else []


async def check(hass: Path, work: Path) -> int:
    report = Report()
    mqtt_port, ha_port, hub_port = free_port(), free_port(), free_port()
    (work / "mosquitto.conf").write_text(
        f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"
    )
    config = work / "homeassistant"
    config.mkdir()
    (config / "configuration.yaml").write_text(
        "homeassistant:\n  name: wmhub check\n  latitude: 0\n  longitude: 0\n  elevation: 0\n"
        "  unit_system: metric\n  time_zone: UTC\n  country: DE\n"
        f"http:\n  server_host: 127.0.0.1\n  server_port: {ha_port}\napi:\nconfig:\nonboarding:\n"
    )
    logs = work / "logs"
    logs.mkdir()
    processes: list[asyncio.subprocess.Process] = []
    broker = await asyncio.create_subprocess_exec(
        "/usr/sbin/mosquitto", "-c", str(work / "mosquitto.conf"),
        stdout=(logs / "mosquitto.log").open("wb"), stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    processes.append(broker)
    home_assistant = await asyncio.create_subprocess_exec(
        str(hass), "-c", str(config), stdout=(logs / "homeassistant.log").open("wb"), stderr=asyncio.subprocess.STDOUT
    )
    processes.append(home_assistant)
    probe = Probe(mqtt_port)
    hub: asyncio.subprocess.Process | None = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            ha = HomeAssistant(http, f"http://127.0.0.1:{ha_port}")

            async def ha_up() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{ha.base}/api/onboarding") as response:
                        return response.status == 200
                return False

            started = time.monotonic()
            await until(ha_up, 300, "Home Assistant answering")
            await ha.onboard()
            _, config_info = await ha.rest("GET", "/api/config")
            report.note(f"Home Assistant {config_info['version']} up in {time.monotonic() - started:.0f} s")
            entry = await ha.setup_mqtt(mqtt_port)
            report.check(entry["title"] != "", f"MQTT integration set up through the config flow ({entry['title']})")
            probe.client.start()
            assert await probe.client.wait_connected(10)

            runs: list[dict[str, Any]] = []
            for run in (1, 2, 3):
                hub = await start_hub(work / "hub-data", mqtt_port, hub_port, logs / "hub.log")
                runs.append(await one_run(report, ha, probe, http, hub_port, run))
                await stop(hub)
                report.check(hub.returncode == 0, f"run {run}: the hub stopped cleanly (exit {hub.returncode})")
            first = runs[0]
            for run, later in enumerate(runs[1:], start=2):
                report.check(
                    later["devices"] == first["devices"],
                    f"restart {run - 1}: the same {len(first['devices'])} Home Assistant devices, no new one",
                )
                changed = sorted(later["entities"] ^ first["entities"])
                report.check(
                    not changed, f"restart {run - 1}: the same {len(first['entities'])} entities{changed or ''}"
                )
                report.check(
                    later["retained"] == first["retained"],
                    f"restart {run - 1}: the same {len(first['retained'])} retained homeassistant/# topics",
                )
            count = sum(len(entries) for entries in (await ha.wmhub_devices()).values())
            report.check(
                count == RECEIVERS + 1, f"after 3 runs Home Assistant has {count} wmhub devices ({RECEIVERS} + the hub)"
            )
            await fewer_channels_check(report, ha, http, work, mqtt_port, free_port())
            await same_name_check(report, ha, http, work, mqtt_port, free_port())
            mqtt_errors = [
                line
                for line in (logs / "homeassistant.log").read_text(errors="replace").splitlines()
                if " ERROR " in line and about_the_hub(line)
            ]
            report.check(not mqtt_errors, f"Home Assistant logged {len(mqtt_errors)} error(s) about MQTT or the hub")
            for line in mqtt_errors[:5]:
                report.note(line[:200])
    except (TimeoutError, AssertionError) as exc:
        report.check(False, f"stopped: {exc}")
    finally:
        if hub is not None:
            await stop(hub)
        await probe.client.stop()
        for process in reversed(processes):
            await stop(process)
    print(f"{'FAILED' if report.failures else 'OK'}: {report.failures} check(s) failed", flush=True)
    return 1 if report.failures else 0


async def one_run(
    report: Report, ha: HomeAssistant, probe: Probe, http: aiohttp.ClientSession, hub_port: int, run: int
) -> dict[str, Any]:
    """One start of the demo: every receiver and the hub in Home Assistant, each once; what it registered."""

    async def all_online() -> list[dict[str, Any]] | None:
        with contextlib.suppress(aiohttp.ClientError):
            devices = await hub_devices(http, hub_port)
            if len(devices) == RECEIVERS and all(d["online"] for d in devices):
                return devices
        return None

    devices = await until(all_online, 60, f"run {run}: every demo receiver online at the hub")
    expected = {f"wmhub_{d['id']}" for d in devices} | {f"wmhub_hub_{HUB_ID}"}

    async def registered() -> dict[str, list[dict[str, Any]]] | None:
        found = await ha.wmhub_devices()
        return found if expected <= set(found) else None

    registry = await until(registered, 60, f"run {run}: every receiver and the hub in Home Assistant")
    extra = set(registry) - expected
    duplicates = {key for key, entries in registry.items() if len(entries) != 1}
    report.check(
        not extra and not duplicates,
        f"run {run}: {len(registry)} devices in Home Assistant, each once ({RECEIVERS} receivers + the hub)"
        + (f"; extra: {sorted(extra)}" if extra else "")
        + (f"; twice: {sorted(duplicates)}" if duplicates else ""),
    )
    found = {key: entries[0] for key, entries in registry.items()}
    hub_device = found[f"wmhub_hub_{HUB_ID}"]
    via_hub = [device for device in found.values() if device.get("via_device_id") == hub_device["id"]]
    report.check(
        len(via_hub) == RECEIVERS,
        f"run {run}: the hub is a device ({hub_device['name']}, {hub_device.get('configuration_url')}); "
        f"{len(via_hub)} receivers connected via it",
    )
    retained = await probe.retained("homeassistant/#")
    components = sum(len(json.loads(payload)["components"]) for payload in retained.values())

    async def every_entity() -> list[dict[str, Any]] | None:
        entities = await ha.entities({device["id"] for device in found.values()})
        return entities if len(entities) >= components else None

    entities = await until(every_entity, 60, f"run {run}: an entity for each of the {components} discovered components")
    if run == 1:
        await first_run_checks(report, ha, probe, http, hub_port, entities)
    return {
        "devices": {key: device["id"] for key, device in found.items()},
        "entities": {entity["unique_id"] for entity in entities},
        "retained": set(retained),
    }


async def first_run_checks(
    report: Report,
    ha: HomeAssistant,
    probe: Probe,
    http: aiohttp.ClientSession,
    hub_port: int,
    entities: list[dict[str, Any]],
) -> None:
    by_unique = {e["unique_id"]: e["entity_id"] for e in entities}
    enabled = [e for e in entities if e.get("disabled_by") is None]
    # a button's state is the time it was last pressed: unknown until then, by design
    valued = [e for e in enabled if not e["entity_id"].startswith("button.")]
    disabled = [e for e in entities if e.get("disabled_by") is not None]
    report.note(f"{len(entities)} entities, {len(enabled)} enabled, {len(disabled)} disabled by default (meters)")
    # every enabled entity has a value within 15 s: sample the states, and list those never known
    seen: dict[str, set[str]] = {e["entity_id"]: set() for e in valued}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        states = await ha.states()
        for entity_id in seen:
            seen[entity_id].add(states.get(entity_id, "missing"))
        if all(values - {"unknown", "unavailable", "missing"} for values in seen.values()):
            break
        await asyncio.sleep(1)
    never_known = sorted(entity_id for entity_id, values in seen.items() if not values - {"unknown", "missing"})
    only_unavailable = sorted(
        entity_id for entity_id, values in seen.items() if values == {"unavailable"} and entity_id not in never_known
    )
    report.check(not never_known, f"no enabled entity stays unknown for 15 s ({len(seen)} checked){never_known or ''}")
    if only_unavailable:
        report.note(f"unavailable (no transmitter linked): {', '.join(only_unavailable)}")
    rate = await ha.state_changes_per_second(set(seen), 20)
    report.note(f"recorder load: {rate:.1f} state changes per second for {len(seen)} enabled entities (20 s)")

    # text entities carry the receiver's limits
    text = by_unique.get("shure-demo-ulxd4q_ch1_name")
    status, state = await ha.rest("GET", f"/api/states/{text}")
    attributes = state.get("attributes", {}) if isinstance(state, dict) else {}
    report.check(
        attributes.get("max") == 8 and bool(attributes.get("pattern")),
        f"{text} carries the ULX-D's limits: min {attributes.get('min')}, max {attributes.get('max')}, "
        f"pattern {attributes.get('pattern')}",
    )

    async def channel(index: int = 1) -> dict[str, Any]:
        async with http.get(f"http://127.0.0.1:{hub_port}/api/v1/channels/shure-demo-ulxd4q:{index}") as response:
            return dict(await response.json())

    async def ha_state(entity_id: str) -> str:
        return (await ha.states()).get(entity_id, "missing")

    # mute round trip
    mute = by_unique.get("shure-demo-ulxd4q_ch1_mute")
    for service, wanted_state, wanted_muted in (("turn_on", "on", True), ("turn_off", "off", False)):
        await ha.rest("POST", f"/api/services/switch/{service}", {"entity_id": mute})

        async def muted(state: str = wanted_state, value: bool = wanted_muted) -> bool:
            return await ha_state(mute or "") == state and (await channel())["muted"] is value

        ok = await _within(muted, 5)
        report.check(ok, f"{mute}: {service} reaches the receiver and comes back as '{wanted_state}'")

    # gain round trip (a number entity with the family's range and step)
    gain = by_unique.get("shure-demo-ulxd4q_ch1_gain")
    status, _ = await ha.rest("POST", "/api/services/number/set_value", {"entity_id": gain, "value": 12})

    async def gained() -> bool:
        return await ha_state(gain or "") in ("12", "12.0") and (await channel())["gain_db"] == 12

    report.check(status == 200 and await _within(gained, 5), f"{gain}: 12 dB reaches the receiver and comes back")

    # rename round trip
    status, _ = await ha.rest("POST", "/api/services/text/set_value", {"entity_id": text, "value": "HA VOX"})

    async def renamed() -> bool:
        return await ha_state(text or "") == "HA VOX" and (await channel())["name"] == "HA VOX"

    report.check(status == 200 and await _within(renamed, 5), f"{text}: rename to 'HA VOX' reaches the receiver")

    # a name outside the limits is refused by Home Assistant itself, before anything is sent
    await probe.subscribe("wmhub/devices/shure-demo-ulxd4q/channels/1/set")
    before = len(probe.messages)
    status, _ = await ha.rest("POST", "/api/services/text/set_value", {"entity_id": text, "value": "NINE CHRS"})
    sent = [topic for topic, _ in probe.messages[before:] if topic.endswith("/set")]
    report.check(
        status >= 400 and not sent and (await channel())["name"] == "HA VOX",
        f"{text}: a 9-character name is refused by Home Assistant itself (HTTP {status}), nothing sent",
    )

    # a refused rename (sent by a client that ignores the limits): the entity shows the true name within 1 s
    set_topic = "wmhub/devices/shure-demo-ulxd4q/channels/1/set"
    channel_topic = set_topic.removesuffix("/set")
    await probe.subscribe(channel_topic)
    await probe.subscribe(f"wmhub/hubs/{HUB_ID}/response/set")
    before = len(probe.messages)
    sent_at = time.monotonic()
    probe.client.publish(set_topic, b'{"name": "REFUSED NAME"}', 1)

    async def republished() -> bool:
        return any(topic == channel_topic for topic, _ in probe.messages[before:])

    restored = await _within(republished, 1.0)
    elapsed = time.monotonic() - sent_at
    answers = [json.loads(p) for t, p in probe.messages[before:] if t.endswith("/response/set")]
    report.check(
        restored and await ha_state(text or "") == "HA VOX",
        f"{text}: a refused rename re-publishes the true name in {elapsed * 1000:.0f} ms; Home Assistant shows "
        f"'{await ha_state(text or '')}' (hub said: {answers[0]['error'] if answers else 'no answer yet'})",
    )

    # identify round trip (a button: the hub's answer on response/set is the confirmation)
    identify = by_unique.get("shure-demo-ulxd4q_ch1_identify")
    before = len(probe.messages)
    status, _ = await ha.rest("POST", "/api/services/button/press", {"entity_id": identify})

    async def identified() -> bool:
        for topic, payload in probe.messages[before:]:
            if topic.endswith("/response/set"):
                answer = json.loads(payload)
                return bool(answer["status"] == "ok" and answer["data"]["results"]["identify"]["ok"])
        return False

    report.check(status == 200 and await _within(identified, 5), f"{identify}: press is confirmed by the receiver")


async def fewer_channels_check(
    report: Report, ha: HomeAssistant, http: aiohttp.ClientSession, work: Path, mqtt_port: int, hub_port: int
) -> None:
    """A ULXD4Q replaced by an SLXD4D at the same address (one device id, made from the address): Home
    Assistant must drop the entities of channels 3 and 4, not keep them as dead entities."""
    quad = await ReplayDevice(Transcript.load(TRANSCRIPTS / "ulxd.txt")).start()
    dual = ReplayDevice(Transcript.load(TRANSCRIPTS / "slxd.txt"), port=quad.port)
    log = work / "logs" / "hub-swap.log"
    hub = await start_hub(work / "swap-data", mqtt_port, hub_port, log, hub_id="hacheck-swap", devices=(quad.url,))
    try:

        async def identified(family: str) -> str | None:
            with contextlib.suppress(aiohttp.ClientError):
                devices = await hub_devices(http, hub_port)
                if devices and devices[0]["online"] and devices[0]["family"] == family:
                    return str(devices[0]["id"])
            return None

        async def channel_entities(device_id: str, disabled: bool = False) -> set[int]:
            """The channels with entities in Home Assistant's registry: enabled ones, or those disabled by
            default (meters), which Home Assistant does not load and so cannot remove but with their device."""
            entries = await ha.ws({"type": "config/entity_registry/list"})
            prefix = f"{device_id}_ch"
            return {
                int(e["unique_id"][len(prefix)])
                for e in entries
                if e["unique_id"].startswith(prefix) and (e.get("disabled_by") is not None) == disabled
            }

        device_id = await until(lambda: identified("ulxd"), 30, "the ULXD4Q identified")

        async def four() -> bool:
            return await channel_entities(device_id) == {1, 2, 3, 4}

        await until(four, 60, "Home Assistant's entities for the ULXD4Q's four channels")
        await quad.stop()
        await dual.start()
        same_id = await until(lambda: identified("slxd"), 60, "the SLXD4D identified at the same address")

        async def two() -> bool:
            return await channel_entities(device_id) == {1, 2}

        report.check(
            same_id == device_id and await _within(two, 30),
            f"a ULXD4Q replaced by an SLXD4D at one address ({device_id}): Home Assistant keeps the entities of "
            f"channels {sorted(await channel_entities(device_id))}, those of channels 3 and 4 are removed",
        )
        report.note(
            "entities disabled by default left in the registry, of channels "
            f"{sorted(await channel_entities(device_id, disabled=True))} (Home Assistant's own limit)"
        )
    finally:
        await stop(hub)
        await dual.stop()
        await quad.stop()


async def same_name_check(
    report: Report, ha: HomeAssistant, http: aiohttp.ClientSession, work: Path, mqtt_port: int, hub_port: int
) -> None:
    """Two receivers left on one default name: each entity's id follows its unique id (the device id), so it
    is known before Home Assistant sees either; made of the name, the second seen got ``_2`` ids."""
    receivers = [await ReplayDevice(Transcript.load(TRANSCRIPTS / "ulxd.txt")).start() for _ in range(2)]
    log = work / "logs" / "hub-same-name.log"
    urls = tuple(receiver.url for receiver in receivers)
    hub = await start_hub(work / "same-name-data", mqtt_port, hub_port, log, hub_id="hacheck-twins", devices=urls)
    try:

        async def both_named() -> list[dict[str, Any]] | None:
            with contextlib.suppress(aiohttp.ClientError):
                devices = await hub_devices(http, hub_port)
                if len(devices) == 2 and all(device["online"] for device in devices):
                    return devices
            return None

        devices = await until(both_named, 30, "the two ULXD4Qs identified")
        ids = {str(device["id"]) for device in devices}

        async def registered() -> list[dict[str, Any]] | None:
            entries = await ha.ws({"type": "config/entity_registry/list"})
            mine = [e for e in entries if any(e["unique_id"].startswith(f"{device_id}_") for device_id in ids)]
            return mine if {e["unique_id"].split("_ch")[0] for e in mine} >= ids else None

        entries = await until(registered, 60, "Home Assistant's entities of both receivers")
        names = {str(device.get("name")) for device in devices}
        astray = [
            e["entity_id"] for e in entries if e["entity_id"].split(".", 1)[1] != entity_object_id(e["unique_id"])
        ]
        report.check(
            not astray,
            f"two receivers named {sorted(names)}: each of their {len(entries)} entity ids is made of its unique id "
            f"(e.g. {entries[0]['entity_id']}), none of the name with a _2{astray[:3] or ''}",
        )
    finally:
        await stop(hub)
        for receiver in receivers:
            await receiver.stop()


async def _within(check: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    try:
        await until(check, timeout, "", every=0.05)
        return True
    except TimeoutError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hass", type=Path, required=True, help="the hass executable of a Home Assistant venv")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) and print its path")
    arguments = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wmhub-ha-check-"))
    code = asyncio.run(check(arguments.hass, work))
    if arguments.keep or code:
        print(f"logs: {work / 'logs'}")
    sys.exit(code)


if __name__ == "__main__":
    main()
