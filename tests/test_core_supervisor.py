"""The driver supervisor: silence means offline, reconnects back off, one bad device stalls no other."""

import asyncio
from collections.abc import Callable

import pytest

from hub import hookimpl
from hub.backoff import Backoff
from hub.drivers import (
    DeviceSink,
    Driver,
    DriverSettings,
    Endpoint,
    EndpointError,
    PacedReader,
    UnsupportedDeviceError,
)
from hub.hookspecs import DriverSpec
from hub.model import Command, CommandKind, CommandResult
from hub.testing import DriverHarness, eventually


class ScriptedDevice:
    """How the in-process test device behaves; tests flip these switches."""

    def __init__(self) -> None:
        self.hang_on_connect = False
        self.unsupported = False
        self.silent = False
        self.garbage = False
        self.fail_when_running = False
        self.connects = 0
        self.closes = 0


DEVICES: dict[str, ScriptedDevice] = {}


class ScriptedDriver(Driver):
    def __init__(self, endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> None:
        if endpoint.options.get("lifetime") == "soon":
            raise ValueError("lifetime must be a number of seconds")
        super().__init__(endpoint, sink, settings)

    async def connect(self) -> None:
        device = DEVICES[self.endpoint.host]
        device.connects += 1
        if device.hang_on_connect:
            await asyncio.Event().wait()
        if device.unsupported:
            self.sink.identify(unique_id=self.endpoint.host, family=None, model="X9", channel_count=0)
            raise UnsupportedDeviceError(f"X9 at {self.endpoint.host} is not a receiver this plugin monitors")
        self.sink.identify(unique_id=self.endpoint.host, family="test", model="T1", channel_count=1)

    async def run(self) -> None:
        device = DEVICES[self.endpoint.host]
        if device.fail_when_running:
            raise RuntimeError("exploded right after connecting")
        while True:
            if device.garbage:
                self.sink.protocol_error("line noise")
            elif not device.silent:
                self.sink.update_channel(1, {"battery_percent": 50})
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        DEVICES[self.endpoint.host].closes += 1

    async def apply(self, command: Command) -> CommandResult:
        if command.value == "escapes":  # answers with what a careless plugin passes on from its device
            return CommandResult(ok=False, error="\x1b[2J" * 1000 + "refused\r\nFORGED", code="refused\x07")
        if command.value == "fine":
            return CommandResult(ok=True, value="fine", error="\x1b[31mnot an error")
        await asyncio.Event().wait()  # never confirms
        raise AssertionError


class ScriptedPlugin:
    @hookimpl
    def register_drivers(self, register: Callable[[DriverSpec], None]) -> None:
        register(
            DriverSpec(scheme="scripted", vendor="test", families=("test",), factory=ScriptedDriver, default_port=1)
        )


def harness() -> DriverHarness:
    hub = DriverHarness(settings=DriverSettings(io_timeout_s=0.3, offline_after_s=0.4))
    hub.plugins.register(ScriptedPlugin(), name="scripted")
    hub.manager.command_timeout_s = 0.3
    return hub


async def test_a_silent_device_goes_offline_and_comes_back_by_itself() -> None:
    DEVICES["quiet"] = ScriptedDevice()
    async with harness() as hub:
        managed = hub.add("scripted://quiet")
        await hub.device(managed)
        DEVICES["quiet"].silent = True
        await hub.device(managed, online=False)
        assert "nothing heard" in str(managed.supervisor.last_error)
        DEVICES["quiet"].silent = False
        await hub.device(managed, timeout=5)
        assert DEVICES["quiet"].connects >= 2
        assert DEVICES["quiet"].closes >= 1


async def test_a_device_hanging_on_connect_does_not_stall_the_others() -> None:
    DEVICES["stuck"] = ScriptedDevice()
    DEVICES["stuck"].hang_on_connect = True
    DEVICES["fine"] = ScriptedDevice()
    async with harness() as hub:
        stuck = hub.add("scripted://stuck")
        device = await hub.device(hub.add("scripted://fine"))
        assert device.channels[0].battery_percent == 50
        await eventually(lambda: stuck.supervisor.attempts >= 2, what="the stuck device to be retried")
        assert stuck.handle.device_id is None


async def test_a_failure_without_a_message_says_what_was_asked_of_whom(caplog: pytest.LogCaptureFixture) -> None:
    """A bare TimeoutError is described by what the hub was waiting for, never by its class name alone."""
    DEVICES["mute-box"] = ScriptedDevice()
    DEVICES["mute-box"].hang_on_connect = True
    caplog.set_level("WARNING")
    async with harness() as hub:
        managed = hub.add("scripted://mute-box?password=Hunter2")
        error = await eventually(lambda: managed.supervisor.last_error, what="the connect error")
        limit = hub.settings.io_timeout_s * 2
        assert error == f"no answer within {limit:g} s while connecting to scripted://mute-box?password=***"
    lines = [record.getMessage() for record in caplog.records if "device unavailable" in record.getMessage()]
    assert lines == [f"device unavailable: scripted://mute-box?password=***: {error}"]


async def test_an_unsupported_device_is_shown_says_why_once_and_is_not_retried_in_a_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    DEVICES["odd"] = ScriptedDevice()
    DEVICES["odd"].unsupported = True
    caplog.set_level("WARNING")
    async with harness() as hub:
        managed = hub.add("scripted://odd")
        device = await hub.device(managed, online=False)
        assert (device.model, device.family, device.channels) == ("X9", None, [])
        assert managed.supervisor.last_error == "X9 at odd is not a receiver this plugin monitors"
        await eventually(lambda: DEVICES["odd"].closes == 1, what="the connection closed")
        assert DEVICES["odd"].connects == 1
    assert [r.getMessage() for r in caplog.records] == [
        "device unavailable: scripted://odd: X9 at odd is not a receiver this plugin monitors"
    ]


async def test_a_command_the_device_never_confirms_times_out_with_a_typed_error() -> None:
    DEVICES["mute"] = ScriptedDevice()
    async with harness() as hub:
        device = await hub.device(hub.add("scripted://mute"))
        result = await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.MUTE, value=True))
        assert (result.ok, result.code) == (False, "timeout")


async def test_commands_to_unknown_devices_and_channels_are_refused_clearly() -> None:
    DEVICES["known"] = ScriptedDevice()
    async with harness() as hub:
        device = await hub.device(hub.add("scripted://known"))
        unknown = await hub.apply(Command(device_id="nope", kind=CommandKind.IDENTIFY))
        no_channel = await hub.apply(Command(device_id=device.id, channel=9, kind=CommandKind.IDENTIFY))
        assert unknown.code == "unavailable" and "unknown device" in str(unknown.error)
        assert no_channel.code == "not_found" and "no channel 9" in str(no_channel.error)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    backoff = Backoff(base=1.0, cap=8.0, jitter=0.5)
    delays = [backoff.next_delay() for _ in range(8)]
    assert all(0.5 * min(8.0, 2**n) <= delay <= min(8.0, 2**n) for n, delay in enumerate(delays))
    assert len(set(delays)) > 1
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_endpoint_parsing_refuses_unusable_urls() -> None:

    assert Endpoint.parse("shure://10.0.0.5", 2202).port == 2202
    assert Endpoint.parse("x://h:9?verify=false").options == {"verify": "false"}
    for bad in ("10.0.0.5", "shure://", "shure://h:99999"):
        with pytest.raises(EndpointError):
            Endpoint.parse(bad, 2202)


async def test_passwords_in_device_urls_never_reach_logs_or_listings(caplog: pytest.LogCaptureFixture) -> None:
    DEVICES["secret"] = ScriptedDevice()
    caplog.set_level("DEBUG")
    async with harness() as hub:
        managed = hub.add("scripted://secret?password=Hunter2-very-secret&user=api")
        await hub.device(managed)
        assert managed.url == "scripted://secret?password=***&user=api"
        assert hub.manager.find("scripted://secret?password=Hunter2-very-secret&user=api") is managed
        assert "Hunter2" not in str(hub.manager.health())
    assert "Hunter2" not in caplog.text


async def test_unparsable_data_is_counted_per_device() -> None:
    DEVICES["noisy"] = ScriptedDevice()
    async with harness() as hub:
        managed = hub.add("scripted://noisy")
        await hub.device(managed)
        DEVICES["noisy"].garbage = True
        await eventually(lambda: managed.health()["protocol_errors"] >= 3, what="protocol errors counted")


async def test_a_driver_that_cannot_be_built_is_reported_and_retried() -> None:
    async with harness() as hub:
        managed = hub.add("scripted://typo?lifetime=soon")
        await eventually(lambda: managed.supervisor.attempts >= 2, what="a second attempt")
        assert managed.health()["last_error"] == "lifetime must be a number of seconds"


async def test_a_reading_outside_the_model_is_unknown_and_counted() -> None:
    DEVICES["liar"] = ScriptedDevice()
    async with harness() as hub:
        managed = hub.add("scripted://liar")
        device = await hub.device(managed)
        managed.handle.update_channel(1, {"battery_percent": 250, "battery_bars": float("nan"), "name": "Lead"})
        channel = device.channels[0]
        assert (channel.battery_percent, channel.battery_bars, channel.name) == (None, None, "Lead")
        assert managed.handle.protocol_errors == 2


async def test_two_urls_whose_devices_identify_alike_get_ids_of_their_own() -> None:
    DEVICES["twin"] = ScriptedDevice()
    async with harness() as hub:
        first = await hub.device(hub.add("scripted://twin:1"))
        second = await hub.device(hub.add("scripted://twin:2"))
        assert (first.id, second.id) == ("test-twin", "test-twin-scripted")
        assert len(hub.store.devices) == 2
        assert await hub.manager.remove("scripted://twin:1")
        third = await hub.device(hub.add("scripted://twin:3"))
        assert third.id == "test-twin" and set(hub.store.devices) == {"test-twin", "test-twin-scripted"}


async def test_ids_that_home_assistant_would_read_as_one_are_kept_apart() -> None:
    """'col.one' and 'col_one' are one id in Home Assistant's discovery topics and unique ids: the second
    device would take over the first's entities there, and removing it would delete them."""
    DEVICES["twin"] = ScriptedDevice()
    async with harness() as hub:
        first = await hub.device(hub.add("scripted://twin:4?id=col.one"))
        second = await hub.device(hub.add("scripted://twin:5?id=col_one"))
        assert (first.id, second.id) == ("test-col.one", "test-col_one-scripted")


async def test_a_device_that_fails_right_after_every_connect_backs_off_all_the_same() -> None:
    """It connects (identifies) and fails at once, over and over: a connection that short was no working one."""
    DEVICES["flaky"] = ScriptedDevice()
    DEVICES["flaky"].fail_when_running = True
    async with harness() as hub:
        managed = hub.add("scripted://flaky")
        await eventually(lambda: managed.supervisor.reconnects >= 3, 10, "three reconnects")
        # the supervisor's own backoff (private): each failure doubled the next delay, none started it over
        assert managed.supervisor._backoff.failures >= 3


async def test_a_driver_writing_after_its_device_was_removed_does_not_bring_it_back() -> None:
    """A driver's background task that outlives the driver keeps the sink it was given: a stranger's plugin
    may well forget to cancel it."""
    DEVICES["zombie"] = ScriptedDevice()
    async with harness() as hub:
        managed = hub.add("scripted://zombie")
        device = await hub.device(managed)
        sink = managed.handle
        assert await hub.manager.remove(device.id)
        sink.identify(unique_id="zombie", family="test", model="ZOMBIE", channel_count=1)
        sink.update_device({"name": "back"})
        sink.update_channel(1, {"battery_percent": 5})
        assert hub.store.get(device.id) is None and hub.store.devices == {}


async def test_what_a_plugin_may_not_write_is_dropped_and_counted() -> None:
    """The user's extended name is the hub's; a reading count is a count; fields are a mapping, every time."""
    DEVICES["careless"] = ScriptedDevice()
    async with harness() as hub:
        managed = hub.add("scripted://careless")
        device = await hub.device(managed)
        hub.store.update_channel(device.id, 1, {"extended_name": "Lead vocal"})  # as the venue store sets it
        received = hub.store.readings_received
        errors = managed.handle.protocol_errors
        managed.handle.update_channel(1, {"extended_name": "PLUGIN"})
        for count in (-131_127, float("nan"), "lots", True):
            managed.handle.heard(count)  # type: ignore[arg-type]
        for fields in (None, "garbage", 42, [("name", "x")]):
            managed.handle.update_channel(1, fields)  # type: ignore[arg-type]
        assert device.channels[0].extended_name == "Lead vocal"
        assert hub.store.readings_received == received
        assert managed.handle.protocol_errors == errors + 9


async def test_a_plugins_command_result_is_passed_on_as_device_text() -> None:
    DEVICES["careless-answers"] = ScriptedDevice()
    async with harness() as hub:
        device = await hub.device(hub.add("scripted://careless-answers"))
        refused = await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.NAME, value="escapes"))
        done = await hub.apply(Command(device_id=device.id, channel=1, kind=CommandKind.NAME, value="fine"))
    assert refused.error is not None and "\x1b" not in refused.error and "\n" not in refused.error
    assert refused.error.startswith("[2J[2J") and len(refused.error) == 300 and refused.code == "refused"
    assert (done.ok, done.value, done.error) == (True, "fine", None)


class _Stream(asyncio.Transport):
    """What PacedReader sees of a TCP transport: whether it is reading."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.closing = False

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing


def paced(
    stream: _Stream, handled: list[bytes], on_throttled: Callable[[], None] | None = None, **settings: float
) -> PacedReader:
    reader = PacedReader(handled.append, boundary=b">", slice_bytes=10, on_throttled=on_throttled, **settings)
    reader.attach(stream)
    return reader


async def test_a_large_read_is_handed_over_in_slices_with_the_loop_running_in_between() -> None:
    stream, handled, between = _Stream(), list[bytes](), list[int]()
    reader = paced(stream, handled, slice_s=0.0)  # one slice per turn of the loop
    reader(b"<A>")
    assert handled == [b"<A>"], "a small read goes through at once"
    asyncio.get_running_loop().call_soon(lambda: between.append(len(handled)))
    reader(b"<ONE><TWO><THREE-LONGER-THAN-A-SLICE>")
    assert handled[1:] == [b"<ONE><TWO>"] and not stream.reading, "the rest waits, reading paused"
    await eventually(lambda: reader.unread == 0, 2, "every slice handed over")
    assert b"".join(handled[1:]) == b"<ONE><TWO><THREE-LONGER-THAN-A-SLICE>" and len(handled) > 3
    assert all(len(piece) <= 10 for piece in handled[1:])
    assert between == [2], "other work ran after the first slice, before the rest"
    assert stream.reading, "reading resumed once all was handed over"


async def test_a_connection_that_used_its_share_of_the_loop_waits_for_the_next_window() -> None:
    stream, handled, throttled = _Stream(), list[bytes](), list[bool]()
    reader = paced(stream, handled, lambda: throttled.append(True), slice_s=0.0, share=0.0, window_s=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader(b"<ONE><TWO><THREE>")
    assert handled == [b"<ONE><TWO>"] and not stream.reading and throttled == [True]
    await eventually(lambda: reader.unread == 0, 2, "the rest, in the next window")
    assert loop.time() - started >= 0.15, "not before the window was over"
    await eventually(lambda: stream.reading, 2, "reading again after the last window")
    assert throttled == [True], "said once"


async def test_what_a_closed_connection_had_not_handed_over_is_dropped() -> None:
    stream, handled = _Stream(), list[bytes]()
    reader = paced(stream, handled, slice_s=0.0)
    reader(b"<ONE><TWO><THREE>")
    stream.closing = True
    reader(b"<LATE>")  # arrived before the close was noticed
    await eventually(lambda: reader.unread == 0, 2, "the rest dropped")
    assert handled == [b"<ONE><TWO>"]
