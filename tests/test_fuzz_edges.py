"""Bad input at the hub's edges: MQTT set/get and bridge requests, REST bodies, through real sockets.

One hub (MQTT to a test broker, HTTP on a free port, one simulated ULX-D) serves every example of the module;
hypothesis is synchronous, so the rig runs its own event loop and each example drives it to completion.
URLs in generated requests never name a host other than 127.0.0.1, so nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from hypothesis import assume
from hypothesis import strategies as st
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator
from wmhub_shure.families import (
    FAMILIES,
    GAIN_OFFSET,
    check_frequency,
    check_gain,
    check_meter_rate,
    check_name,
)
from wmhub_shure.simulator import ShureSimulator

from hub.app import Hub
from hub.model import CommandError
from hub.testing import eventually
from tests.fault_harness import TOKEN, device_of, hub_config, is_online, running_hub
from tests.mosquitto import MqttProbe, running_broker
from tests.reliability_report import fuzz, record_check

T = TypeVar("T")


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # the standard encoder: integers beyond 64 bits included


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.sampled_from([0, 1, -1, 42, 1e308, -0.0, 470.2, 99999, 100000, "toggle", "", " ", "VOX 1", "low", "50mW"]),
    st.text(max_size=40),
)
KEYS = st.sampled_from(
    [
        "name", "muted", "gain_db", "gain_step_db", "frequency_mhz", "identify", "rf_output", "meter_rate_ms",
        "tx_power", "slot_rf_power_mode", "url", "id", "device_id", "channel", "ms", "transaction", "kind", "value",
        "slot", "extra",
    ]
)  # fmt: skip
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=12,
)
SAFE_URLS = st.sampled_from(
    ["", "nope://127.0.0.1", "shure://", "shure://127.0.0.1:notaport", "shure://[::1", "127.0.0.1", "://", "shure"]
)


def _no_foreign_urls(value: Any) -> bool:
    """True unless a generated string could be taken for a device URL (only SAFE_URLS may look like one)."""
    if isinstance(value, str):
        return "://" not in value or value in SAFE_URLS.elements  # type: ignore[attr-defined]
    if isinstance(value, dict):
        return all(_no_foreign_urls(item) for item in value.values())
    if isinstance(value, list):
        return all(_no_foreign_urls(item) for item in value)
    return True


# Plausible control values, in and just out of range, so many commands really reach the receiver.
PLAUSIBLE = st.one_of(
    st.booleans(),
    st.just("toggle"),
    st.integers(-25, 50),
    st.floats(-25, 50),
    st.floats(460, 700).map(lambda mhz: round(mhz, 3)),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=10),
)
SET_BODIES = st.dictionaries(
    st.sampled_from(["name", "muted", "gain_db", "gain_step_db", "frequency_mhz", "identify", "meter_rate_ms"]),
    PLAUSIBLE,
    min_size=1,
    max_size=3,
)
OBJECTS = st.one_of(
    st.dictionaries(KEYS, JSON_VALUES, max_size=4),
    st.fixed_dictionaries({"url": SAFE_URLS}, optional={"transaction": SCALARS}),
).filter(_no_foreign_urls)
PAYLOADS = st.one_of(
    OBJECTS.map(dumps),
    st.binary(max_size=64),
    JSON_VALUES.filter(_no_foreign_urls).map(dumps),
    st.sampled_from([b"", b"{", b"null", b"[]", b'{"name": "' + b"x" * 100_000 + b'"}', b'{"gain_db": 1e400}']),
)


@dataclass
class EdgeRig:
    loop: asyncio.AbstractEventLoop
    hub: Hub
    probe: MqttProbe
    session: aiohttp.ClientSession
    sim: ShureSimulator
    device_id: str
    http: str
    ssc1: Ssc1Simulator
    ssc1_id: str
    sets_seen: int = 0

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def still_well(self) -> None:
        assert is_online(self.hub, self.sim.url), "the device went offline during the fuzz"
        assert is_online(self.hub, self.ssc1.url), "the SSCv1 device went offline during the fuzz"
        bad = [line for line in self.sim.received if line.startswith("SET") and not within_limits(line)]
        assert not bad, f"values outside the ULX-D's limits reached the receiver: {bad}"


def within_limits(line: str) -> bool:
    """Whether a SET the simulator received (``SET <channel> PARAM value``) respects the ULX-D's limits."""
    parts = line.split(" ", 3)
    param, value = (parts[2], parts[3]) if len(parts) == 4 else (parts[-1], "")
    family = FAMILIES["ulxd"]
    checks: dict[str, Callable[[str], object]] = {
        "CHAN_NAME": lambda text: check_name(text, family.name_max),
        "DEVICE_ID": lambda text: check_name(text, family.device_name_width),
        "AUDIO_GAIN": lambda text: check_gain(int(text) - GAIN_OFFSET) if text.isdigit() else int(text.split()[1]),
        "FREQUENCY": lambda text: check_frequency(int(text) / 1000, family.freq_digits),
        "METER_RATE": lambda text: check_meter_rate(int(text)),
        "AUDIO_MUTE": lambda text: {"ON": 1, "OFF": 1, "TOGGLE": 1}[text],
        "FLASH": lambda text: {"ON": 1}[text],
    }
    try:
        checks[param](value)
    except (CommandError, KeyError, ValueError, IndexError):
        return False
    return True


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeRig]:
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    data_dir: Path = tmp_path_factory.mktemp("edges")

    async def start() -> EdgeRig:
        broker = await stack.enter_async_context(running_broker())
        sim = await stack.enter_async_context(ShureSimulator("ulxd4d"))
        ssc1 = await stack.enter_async_context(Ssc1Simulator("ewdx-em2"))
        config = hub_config(data_dir, [sim.url, ssc1.url], broker.url, hub_id="edgefuzz", offline_after_s=5.0)
        hub = await stack.enter_async_context(running_hub(config))
        probe = await stack.enter_async_context(MqttProbe(broker))
        await probe.subscribe(f"{config.mqtt.base_topic}/hubs/edgefuzz/response/#")
        session = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))
        await eventually(lambda: is_online(hub, sim.url) and is_online(hub, ssc1.url), 10, "devices online")
        device, ssc1_device = device_of(hub, sim.url), device_of(hub, ssc1.url)
        assert device is not None and ssc1_device is not None
        http = f"http://127.0.0.1:{hub.web.port}"
        return EdgeRig(loop, hub, probe, session, sim, device.id, http, ssc1, ssc1_device.id)

    try:
        rig = loop.run_until_complete(start())
        yield rig
        bad = [line for line in rig.sim.received if line.startswith("SET") and not within_limits(line)]
        record_check(
            "Control",
            "every SET the fuzzed edges made reach the receiver is within the family's limits",
            f"{rig.sets_seen} SETs reached the receiver, {len(bad)} outside the limits",
        )
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


MQTT_TARGETS = st.one_of(
    st.tuples(st.just("channel"), st.integers(1, 4), st.sampled_from(["set", "get"])),
    st.tuples(st.just("device"), st.none(), st.sampled_from(["set", "get"])),
    st.tuples(
        st.just("request"),
        st.none(),
        st.sampled_from(
            [
                "info",
                "devices",
                "device/add",
                "device/remove",
                "candidates",
                "candidate/approve",
                "channel/rename",
                "meter_rate",
                "discovery/restart",
                "nonsense",
                "device",
            ]
        ),
    ),
)


# where an empty payload, what clearing a retained message delivers, is ignored unanswered (the set and the
# requests that take values; tests/test_mqtt_control.py)
IGNORED_WHEN_EMPTY = frozenset(
    {"set", "device/add", "device/remove", "candidate/approve", "channel/rename", "meter_rate"}
)


async def mqtt_exchange(
    rig: EdgeRig, target: tuple[str, int | None, str], payload: bytes, device_id: str | None = None
) -> dict[str, Any]:
    base = rig.hub.config.mqtt.base_topic
    kind, channel, action = target
    device = device_id or rig.device_id  # the hub subscribes to the control topics of known devices only
    if kind == "request":
        topic = f"{base}/hubs/edgefuzz/request/{action}"
    elif channel is None:
        topic = f"{base}/devices/{device}/{action}"
    else:
        topic = f"{base}/devices/{device}/channels/{channel}/{action}"
    rig.probe.clear()
    rig.probe.publish(topic, payload)
    _, response = await eventually(
        lambda: next(iter(rig.probe.messages), None), 8, f"a response to {topic} <- {payload[:200]!r}"
    )
    decoded: dict[str, Any] = orjson.loads(response)
    return decoded


@fuzz(
    "MQTT set/get and bridge requests",
    "random bytes, non-objects, unknown and mistyped keys, huge names, 1e400, any transaction type, "
    "unknown channels and commands",
    "exactly one response per request ({status: ok|error}, transaction echoed); the device stays online "
    "and no value outside its family's limits ever reaches it",
    max_examples=150,
    shrink=False,
    target=MQTT_TARGETS,
    payload=PAYLOADS,
)
def test_mqtt_payloads(rig: EdgeRig, target: tuple[str, int | None, str], payload: bytes) -> None:
    assume(payload or target[2] not in IGNORED_WHEN_EMPTY)
    response = rig.run(mqtt_exchange(rig, target, payload))
    assert response["status"] in ("ok", "error")
    if response["status"] == "error":
        assert isinstance(response["error"], str) and response["error"]
        assert not response["error"].startswith("internal error"), "bad input is refused, never a bug"
    with contextlib.suppress(orjson.JSONDecodeError):
        sent = orjson.loads(payload)
        if isinstance(sent, dict) and "transaction" in sent:
            assert response.get("transaction") == sent["transaction"]
    rig.still_well()


REST_WRITES = st.sampled_from(
    [
        ("POST", "/api/v1/channels/{channel}/commands"),
        ("POST", "/api/v1/devices/{device}/commands"),
        ("PUT", "/api/v1/channels/{channel}/extended-name"),
        ("POST", "/api/v1/devices"),
        ("POST", "/api/v1/candidates/approve"),
        ("DELETE", "/api/v1/devices/{other}"),
    ]
)
BODIES = st.one_of(
    st.dictionaries(KEYS, JSON_VALUES, max_size=4).filter(_no_foreign_urls).map(dumps),
    st.fixed_dictionaries(
        {"kind": st.sampled_from(["name", "mute", "gain", "gain_step", "frequency", "identify", "meter_rate", "x"])},
        optional={"value": SCALARS, "slot": SCALARS},
    ).map(dumps),
    st.fixed_dictionaries({"url": SAFE_URLS}).map(dumps),
    st.binary(max_size=64),
    st.sampled_from(
        [b"", b"[]", b"null", b'{"kind": "gain", "value": 1e400}', b'{"kind":"name","value":"' + b"y" * 70000]
    ),
)


async def rest_exchange(rig: EdgeRig, method: str, path: str, body: bytes) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with rig.session.request(method, rig.http + path, data=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


@fuzz(
    "REST write endpoints",
    "random bodies (bytes, wrong JSON types, unknown keys, 1e400, 70 KB strings) and ids, with the token",
    "a JSON answer; 4xx with {error, code} for bad input; never a 500; the device stays online and no "
    "value outside its family's limits ever reaches it",
    max_examples=150,
    shrink=False,
    operation=REST_WRITES,
    body=BODIES,
    channel=st.sampled_from(["{device}:1", "{device}:2", "{device}:9", "nope:1", "{device}", ":", "%00"]),
    other=st.text(max_size=12).filter(lambda text: text.strip("/.") != "" and "?" not in text and "#" not in text),
)
def test_rest_bodies(rig: EdgeRig, operation: tuple[str, str], body: bytes, channel: str, other: str) -> None:
    method, template = operation
    channel_ref = quote(channel.format(device=rig.device_id), safe=":%")
    path = template.format(channel=channel_ref, device=quote(rig.device_id), other=quote(f"x{other}", safe=""))
    status, answer = rig.run(rest_exchange(rig, method, path, body))
    assert status != 500, answer
    if status >= 400:
        assert isinstance(answer, dict) and answer.get("error") and answer.get("code"), answer
    rig.still_well()


def test_rest_write_paths_need_the_token(rig: EdgeRig) -> None:
    """Every write operation the server registers refuses a request without (or with a wrong) token."""
    from hub.web.server import WebServer

    server = rig.hub.web
    assert isinstance(server, WebServer)
    writes = [op for op in server.operations if op.write]
    assert writes, "no write operations registered"

    async def attempt(method: str, path: str, token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with rig.session.request(method, rig.http + path, json={}, headers=headers) as response:
            return response.status

    refused = []
    for op in writes:
        path = op.path.replace("{channel_id}", f"{rig.device_id}:1").replace("{device_id}", rig.device_id)
        path = re.sub(r"\{[^}]*\}", "1", path)
        for token in (None, "wrong", TOKEN[:-1]):
            status = rig.run(attempt(op.method, path, token))
            refused.append((op.method, op.path, token, status))
    bad = [entry for entry in refused if entry[3] != 401]

    record_check(
        "REST",
        f"every write operation ({len(writes)}) without the token, with a wrong one, with a truncated one",
        "401 for all" if not bad else f"NOT refused: {bad}",
    )
    assert not bad


SET_KEYS = {
    "name": "name",
    "muted": "mute",
    "gain_db": "gain",
    "gain_step_db": "gain_step",
    "frequency_mhz": "frequency",
}


@fuzz(
    "Control values over MQTT and REST",
    "plausible commands (names, mutes, gains, steps, frequencies) in and just out of range, to a Shure ULX-D "
    "and a Sennheiser EW-DX",
    "confirmed ones are applied by the receiver; the rest refused by the hub with a clear error, never by the "
    "receiver (except an EW-DX frequency outside its band variant, which the hub cannot know: refused 406)",
    max_examples=120,
    shrink=False,
    edge=st.sampled_from(["mqtt", "rest"]),
    vendor=st.sampled_from(["shure", "sennheiser"]),
    channel=st.integers(1, 2),
    key=st.sampled_from(sorted(SET_KEYS)),
    value=PLAUSIBLE,
)
def test_plausible_control_values(rig: EdgeRig, edge: str, vendor: str, channel: int, key: str, value: Any) -> None:
    sets_before = sum(line.startswith("SET") for line in rig.sim.received)
    device_id = rig.device_id if vendor == "shure" else rig.ssc1_id
    if edge == "mqtt":
        response = rig.run(mqtt_exchange(rig, ("channel", channel, "set"), dumps({key: value}), device_id))
        ok, error = response["status"] == "ok", response["error"]
        results = (response.get("data") or {}).get("results") or {}
        code = next((result.get("code") for result in results.values()), None)
    else:
        body = dumps({"kind": SET_KEYS[key], "value": value})
        status, answer = rig.run(rest_exchange(rig, "POST", f"/api/v1/channels/{device_id}:{channel}/commands", body))
        ok, error, code = status == 200, answer.get("error"), answer.get("code")
    # "refused" means the receiver itself turned the value down: the hub let an invalid one through. The one
    # exception is an EW-DX frequency: the hub checks the family's whole range (470-1075 MHz) because it
    # does not know the receiver's band variant, so the receiver refuses (406) what its band lacks.
    band_limited = vendor == "sennheiser" and key == "frequency_mhz"
    assert code != "refused" or band_limited, (edge, key, value, error)
    if ok and key in ("name", "muted"):
        if vendor == "shure":
            applied = rig.sim.channels[channel].values.get(key)
        else:
            applied = getattr(rig.ssc1.channels[channel - 1], key)
        assert value == "toggle" or applied == value, (vendor, key, value, applied)
    if not ok:
        assert isinstance(error, str) and error
    rig.still_well()
    rig.sets_seen += sum(line.startswith("SET") for line in rig.sim.received) - sets_before
