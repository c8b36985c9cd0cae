"""What the fault suites share: a whole hub in-process (MQTT to a test broker, HTTP on a free port) with
short timings, clocks for detection and recovery, and comparisons of the hub's state with a simulator's."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from hub.app import Hub
from hub.clock import Clock
from hub.compose import compose_hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.model import METER_FIELDS, Device
from hub.plugins import PluginHost
from hub.redact import redact
from hub.testing import eventually

# Short enough that a fault test takes seconds, long enough that a loaded 2-core machine does not see
# false offlines: detection times in the report are measured with these settings.
OFFLINE_AFTER_S = 1.5
IO_TIMEOUT_S = 1.0
TOKEN = "fault-suite-token"


def hub_config(
    data_dir: Path, devices: list[str], mqtt_url: str = "off", hub_id: str = "faulthub", **overrides: Any
) -> HubConfig:
    values: dict[str, Any] = {
        "hub_id": hub_id,
        "data_dir": data_dir,
        "devices": devices,
        "offline_after_s": OFFLINE_AFTER_S,
        "io_timeout_s": IO_TIMEOUT_S,
        "command_timeout_s": 3.0,
        "meter_rate_ms": 200,
        "mqtt": MqttSettings(url=mqtt_url, base_topic=f"wm{hub_id}", homeassistant=False),
        "http": HttpSettings(port=0, token=TOKEN),
        "discovery": DiscoverySettings(enabled=False, interfaces=["127.0.0.1"]),
    }
    values.update(overrides)
    return HubConfig(**values)


@asynccontextmanager
async def running_hub(
    config: HubConfig, plugins: str = "shure,sennheiser", clock: Clock | None = None
) -> AsyncIterator[Hub]:
    host = PluginHost()
    host.load_entry_points(only=plugins)
    hub = compose_hub(config, host, clock)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


def device_of(hub: Hub, url: str) -> Device | None:
    managed = hub.devices.by_url.get(redact(url))  # listed under the URL as shown, password redacted
    device_id = managed.handle.device_id if managed is not None else None
    return hub.store.get(device_id) if device_id else None


def is_online(hub: Hub, url: str) -> bool:
    device = device_of(hub, url)
    return device is not None and device.online


def is_offline(hub: Hub, url: str) -> bool:
    device = device_of(hub, url)
    return device is not None and not device.online


async def seconds_until(check: Callable[[], Any], timeout: float, what: str) -> float:
    """How long ``check`` took to become true (fails the test after ``timeout``)."""
    started = time.monotonic()
    await eventually(check, timeout, what)
    return round(time.monotonic() - started, 3)


def state_differences(device: Device | None, expected: dict[str, Any]) -> list[str]:
    """Non-meter fields where the hub disagrees with ``expected`` (a Shure simulator's ``state``)."""
    if device is None:
        return ["device unknown to the hub"]
    found = [
        f"device.{name}: {getattr(device, name)!r} != {value!r}"
        for name, value in expected["device"].items()
        if getattr(device, name) != value
    ]
    for index, fields in expected["channels"].items():
        channel = device.channel(index)
        if channel is None:
            found.append(f"ch{index} missing")
            continue
        found.extend(
            f"ch{index}.{name}: {getattr(channel, name)!r} != {value!r}"
            for name, value in fields.items()
            if name not in METER_FIELDS and getattr(channel, name) != value
        )
    return found


def watchdog_judged_alive_since(hub: Hub, url: str, since: float) -> bool:
    """Whether the silence watchdog has looked at the device at or after ``since`` (the hub's clock) and
    found it still talking: a fault that should not take a device offline has then been judged."""
    managed = hub.devices.by_url.get(redact(url))
    judged = managed.supervisor.judged_alive_at if managed is not None else None
    return judged is not None and judged >= since


class OnlineWatch:
    """Samples a device's online flag every 20 ms in the background: ``offline_spells`` counts how often it
    went offline while watched (a fault the hub should ride out must leave it at 0)."""

    def __init__(self, hub: Hub, url: str) -> None:
        self.hub = hub
        self.url = url
        self.offline_spells = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> OnlineWatch:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        was_online = True
        while True:
            online = is_online(self.hub, self.url)
            if was_online and not online:
                self.offline_spells += 1
            was_online = online
            await asyncio.sleep(0.02)


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll an HTTP condition until it holds; fail at the deadline (a refused connection counts as no)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            if await check():
                return
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.1)


class Api:
    """The hub's REST API over a real socket, with the write token."""

    def __init__(self, hub: Hub | int) -> None:
        """``hub`` in this process, or the HTTP port of one in another (``wmhub run``)."""
        self.base = f"http://127.0.0.1:{hub if isinstance(hub, int) else hub.web.port}"
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.session.close()

    async def get(self, path: str) -> Any:
        async with self.session.get(self.base + path) as response:
            return await response.json()

    async def post(self, path: str, body: Any, token: str | None = TOKEN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.post(self.base + path, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def delete(self, path: str, token: str = TOKEN) -> int:
        async with self.session.delete(self.base + path, headers={"Authorization": f"Bearer {token}"}) as response:
            return response.status
