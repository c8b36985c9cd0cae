"""A hub starting at a large site connects its devices a bounded number at a time, and a device waiting for
its turn is not timed out: it connects at its first attempt however long the queue ahead of it was."""

from __future__ import annotations

import asyncio

from hub.devices import DeviceManager
from hub.drivers import DriverSettings
from hub.plugins import PluginHost
from hub.state import StateStore
from hub.testing import QuietDriver, eventually, plugin_of

# each receiver takes this long to answer its first full read: longer than the read timeout below, well within
# the connect's bound of twice that (0.4 s to spare: a loaded CI machine once ran 0.15 s past a 0.2 s bound)
HANDSHAKE_S = 0.6


class Handshakes:
    def __init__(self) -> None:
        self.now = 0
        self.most = 0


HANDSHAKES = Handshakes()


class SlowToAnswer(QuietDriver):
    async def connect(self) -> None:
        HANDSHAKES.now += 1
        HANDSHAKES.most = max(HANDSHAKES.most, HANDSHAKES.now)
        try:
            await asyncio.sleep(HANDSHAKE_S)
        finally:
            HANDSHAKES.now -= 1
        self.sink.identify(unique_id=str(self.endpoint.port), family="rx", model="S-1", channel_count=1)


async def test_devices_connect_a_few_at_a_time_and_none_times_out_waiting_its_turn() -> None:
    plugins = PluginHost()
    plugins.register(plugin_of("slow", SlowToAnswer, "rx"), "slow")
    # a connect may take 2 x io_timeout_s = 1 s; eight devices two at a time take four handshakes, 2.4 s
    settings = DriverSettings(io_timeout_s=0.5, offline_after_s=10.0)
    store = StateStore()
    devices = DeviceManager(plugins, store, settings, max_connecting=2)
    try:
        managed = [devices.add(f"slow://127.0.0.1:{port}") for port in range(1, 9)]
        await eventually(lambda: sum(device.online for device in store.devices.values()) == 8, 15, "all online")
        assert HANDSHAKES.most == 2
        assert [entry.supervisor.attempts for entry in managed] == [1] * 8
        assert all(entry.supervisor.last_error is None for entry in managed)
    finally:
        await devices.close()
