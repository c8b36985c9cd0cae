"""Time to build the REST device list (``GET /api/v1/devices``: every device with its connection health).

``python -m bench.device_list --receivers 2500`` starts a hub (no MQTT, no HTTP, no discovery) with N
in-process receivers that identify themselves at once and never talk again, waits until all are in the
state store, then times building every device's view the way ``list_devices`` does (each device's
connection looked up through ``HubService.connection``) and encoding it as the response body, several times,
and prints the median. No socket
is opened: the receivers live in the process, so the number is the hub's own work alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from hub.app import Hub
from hub.config import DiscoverySettings, HttpSettings, HubConfig, MqttSettings
from hub.plugins import PluginHost
from hub.testing import QuietDriver, plugin_of
from hub.web.api import device_json
from hub.web.routing import dumps


class QuietReceiver(QuietDriver):
    async def connect(self) -> None:
        self.sink.identify(unique_id=str(self.endpoint.port), family="bench", model="Q-2", channel_count=2)


async def measure(receivers: int, repeats: int, data_dir: Path) -> tuple[float, float]:
    """The median time to build the device list, and to look up every device's connection alone."""
    config = HubConfig(
        hub_id="bench",
        data_dir=data_dir,
        mqtt=MqttSettings(url="off"),
        discovery=DiscoverySettings(enabled=False),
        http=HttpSettings(enabled=False),
    )
    plugins = PluginHost()
    plugins.register(plugin_of("quiet", QuietReceiver, "bench"), "quiet")
    async with Hub(config, plugins) as hub:
        for port in range(1, receivers + 1):
            await hub.add_device(f"quiet://127.0.0.1:{port}", source="config")
        while len(hub.state.devices) < receivers:  # noqa: ASYNC110 - a bench, not a test: polling is fine
            await asyncio.sleep(0.05)
        lists: list[float] = []
        lookups: list[float] = []
        devices = sorted(hub.state.devices.values(), key=lambda device: device.id)
        for _ in range(repeats):
            gc.collect()  # a full collection falling into one run would swamp the numbers
            with collector_off():
                started = time.perf_counter()
                views = [device_json(hub, device) for device in devices]
                body = dumps({"total": len(views), "items": views})
                lists.append(time.perf_counter() - started)
                started = time.perf_counter()
                found = [hub.connection(device.id) for device in devices]
                lookups.append(time.perf_counter() - started)
            assert all(view["connection"] is not None for view in views) and all(found) and body
        return statistics.median(lists), statistics.median(lookups)


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=2500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        device_list, lookups = asyncio.run(measure(args.receivers, args.repeats, Path(data_dir)))
    print(
        f"{args.receivers} receivers: device list {device_list * 1000:.1f} ms, "
        f"of which connection lookups {lookups * 1000:.1f} ms (medians of {args.repeats})"
    )


if __name__ == "__main__":
    main()
