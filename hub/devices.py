"""The device manager: one supervised driver per device URL, and the control path back to plugins.

Data flows driver -> :class:`DeviceHandle` -> state store. Commands flow edge -> :meth:`DeviceManager.
apply` -> the owning plugin's ``apply_command`` hook -> driver. Each device runs in its own task, so one
device that hangs or crashes never stalls another.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hub.drivers import (
    ID_OPTION,
    DeviceSink,
    Driver,
    DriverSettings,
    DriverSupervisor,
    Endpoint,
    EndpointError,
    redact_url,
)
from hub.model import (
    CHANNEL_BOUNDS,
    Capabilities,
    Command,
    CommandError,
    CommandResult,
    Device,
    DeviceUnavailableError,
)
from hub.plugins import PluginError, PluginHost
from hub.state import ChannelWriter, StateStore

log = logging.getLogger("hub.devices")

_BOUNDED = frozenset(CHANNEL_BOUNDS)


class UnknownSchemeError(EndpointError):
    """No loaded plugin handles this URL scheme."""


class DeviceHandle(DeviceSink):
    """The sink one driver writes to; it binds the driver's reports to a device id in the store."""

    def __init__(
        self,
        store: StateStore,
        endpoint: Endpoint,
        vendor: str,
        device_id: str | None = None,
        claims: dict[str, str] | None = None,
    ) -> None:
        self._store = store
        # device id -> the URL of the handle that holds it, shared by every handle of one manager
        self._claims = {} if claims is None else claims
        self.endpoint = endpoint
        self.vendor = vendor
        self.device_id = device_id
        self._last_heard = time.monotonic()
        # channel index -> its writer in the store, so a meter sample need not find the channel again
        self._writers: dict[int, ChannelWriter] = {}
        self.last_error: str | None = None
        self.protocol_errors = 0
        self.on_identified: Callable[[DeviceHandle], None] | None = None
        # (family, model) -> what such a device reports and accepts; set by the manager to ask the owning plugin
        self.capabilities_of: Callable[[str | None, str | None], Capabilities | None] = lambda family, model: None
        self.log = logging.LoggerAdapter(
            logging.getLogger(f"hub.device.{vendor}"), {"device": device_id or redact_url(endpoint.url)}
        )

    # DeviceSink

    def identify(
        self,
        *,
        unique_id: str | None,
        family: str | None,
        model: str | None,
        channel_count: int,
        firmware: str | None = None,
        name: str | None = None,
    ) -> None:
        # the stablest name there is: one the user gave, a serial or MAC, and only then the address
        given = self.endpoint.options.get(ID_OPTION) or unique_id
        suffix = re.sub(r"[\s/+#]", "_", given.strip()) if given and given.strip() else self.endpoint.host_port_id
        device_id = self._claim(f"{self.vendor}-{suffix}")
        if self.device_id is not None and self.device_id != device_id:
            self.log.warning(
                "device at %s is now %s (was %s)", redact_url(self.endpoint.url), device_id, self.device_id
            )
            self._store.remove_device(self.device_id)
        self.device_id = device_id
        self.log.extra = {"device": device_id}
        device = self._store.get(device_id)
        if device is None:
            self._store.add_device(
                Device(id=device_id, vendor=self.vendor, host=self.endpoint.host, port=self.endpoint.port)
            )
        capabilities = self.capabilities_of(family, model)
        self._store.update_device(
            device_id,
            {"family": family, "model": model, "firmware": firmware, "name": name, "capabilities": capabilities},
        )
        self._store.ensure_channels(device_id, channel_count)
        self._store.set_online(device_id, True)
        self._last_heard = time.monotonic()
        if self.on_identified is not None:
            self.on_identified(self)

    def _claim(self, wanted: str) -> str:
        """The id this device may use: ``wanted`` unless another URL's device already holds it.

        Two URLs can name devices that identify alike: a TCP and a UDP receiver on the same host and port
        number, or one device added twice. Each then gets an id of its own instead of writing into the other.
        """
        scheme, place = self.endpoint.scheme, self.endpoint.host_port_id
        choices = [wanted, f"{wanted}-{scheme}", f"{wanted}-{scheme}-{place}"]
        if self.device_id in choices:
            choices.insert(0, self.device_id)  # keep the id it had (e.g. restored from the store)
        for choice in choices:
            if self._claims.get(choice, self.endpoint.url) == self.endpoint.url:
                break
        if choice != wanted:
            self.log.warning(
                "another device already is %s; this one (%s) is %s", wanted, redact_url(self.endpoint.url), choice
            )
        if self.device_id is not None and self._claims.get(self.device_id) == self.endpoint.url:
            del self._claims[self.device_id]
        self._claims[choice] = self.endpoint.url
        return choice

    def release(self) -> None:
        """Give the id up (the device was removed)."""
        if self.device_id is not None and self._claims.get(self.device_id) == self.endpoint.url:
            del self._claims[self.device_id]

    def update_device(self, fields: Mapping[str, Any]) -> None:
        self._last_heard = time.monotonic()
        if self.device_id is not None:
            self._store.update_device(self.device_id, fields)

    def update_channel(self, index: int, fields: Mapping[str, Any]) -> None:
        self._last_heard = time.monotonic()
        writer = self._writers.get(index)
        if writer is None or not writer.live:
            if self.device_id is None:
                return
            writer = self._store.channel_writer(self.device_id, index)
            if writer is None:
                return
            self._writers[index] = writer
        # most meter samples carry no bounded field (levels have no bounds in the model): no check, no call
        writer.update(fields if _BOUNDED.isdisjoint(fields) else self._within_bounds(fields))

    def _within_bounds(self, fields: Mapping[str, Any]) -> Mapping[str, Any]:
        """A value outside the model's range is a device (or plugin) error: keep it out of the state."""
        checked: dict[str, Any] | None = None  # copied only when a value is refused: this runs per sample
        for name in _BOUNDED.intersection(fields):
            value = fields[name]
            if value is None:
                continue
            low, high = CHANNEL_BOUNDS[name]
            numeric = isinstance(value, int | float) and not isinstance(value, bool) and value == value  # not NaN
            if not numeric or (low is not None and value < low) or (high is not None and value > high):
                self.protocol_error(f"{name}={value!r} is outside the model's range")
                if checked is None:
                    checked = dict(fields)
                checked[name] = None
        return fields if checked is None else checked

    def heard(self) -> None:
        self._last_heard = time.monotonic()

    def protocol_error(self, detail: str) -> None:
        self.protocol_errors += 1
        self.log.debug("unparsable data: %s", detail)

    # LinkState (for the supervisor)

    def last_heard(self) -> float:
        return self._last_heard

    def set_online(self, online: bool, error: str | None = None) -> None:
        if online:
            self._last_heard = time.monotonic()
        else:
            self.last_error = error
        # a device comes online when the driver identifies it; the supervisor only takes it down
        if self.device_id is not None and not online:
            self._store.set_online(self.device_id, False)


@dataclass
class ManagedDevice:
    url: str  # as shown to people: any password redacted
    plugin: str
    handle: DeviceHandle
    supervisor: DriverSupervisor
    task: asyncio.Task[None]

    @property
    def driver(self) -> Driver | None:
        return self.supervisor.driver

    def health(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "device_id": self.handle.device_id,
            "plugin": self.plugin,
            "connected": self.supervisor.connected_since is not None,
            "connected_since": self.supervisor.connected_since,
            "attempts": self.supervisor.attempts,
            "reconnects": self.supervisor.reconnects,
            "last_error": self.supervisor.last_error,
            "protocol_errors": self.handle.protocol_errors,
        }


class RateLimitedError(CommandError):
    """More commands for one device than its rate allows; this one was not sent."""

    code = "rate_limited"


class TokenBucket:
    """``rate`` commands per second on average, a burst of up to ``burst`` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class DeviceManager:
    """Adds and removes devices by URL, supervises their drivers and routes commands to them."""

    def __init__(
        self,
        plugins: PluginHost,
        store: StateStore,
        settings: DriverSettings,
        command_timeout_s: float = 5.0,
        control_rate_per_s: float | None = None,
    ) -> None:
        self._plugins = plugins
        self._store = store
        self.settings = settings
        self.command_timeout_s = command_timeout_s
        self.control_rate_per_s = control_rate_per_s
        self._buckets: dict[str, TokenBucket] = {}
        self.by_url: dict[str, ManagedDevice] = {}
        self._claims: dict[str, str] = {}

    def resolve(self, url: str) -> tuple[Endpoint, str, Any]:
        """Parse ``url`` and find the plugin and driver spec for its scheme; raise EndpointError."""
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        drivers = self._plugins.drivers()
        if scheme not in drivers:
            known = ", ".join(f"{name}://" for name in sorted(drivers)) or "none loaded"
            raise UnknownSchemeError(f"no plugin handles {redact_url(url)!r} (known schemes: {known})")
        spec, plugin_name = drivers[scheme]
        return Endpoint.parse(url, spec.default_port), plugin_name, spec

    def add(self, url: str, device_id: str | None = None) -> ManagedDevice:
        """Start supervising the device at ``url``. Adding a URL twice returns the existing entry.

        Devices are listed under the redacted URL, so a password in it never reaches a log, MQTT or REST.
        """
        shown = redact_url(url)
        if shown in self.by_url:
            return self.by_url[shown]
        endpoint, plugin_name, spec = self.resolve(url)
        handle = DeviceHandle(self._store, endpoint, spec.vendor, device_id, self._claims)
        handle.capabilities_of = lambda family, model: self._capabilities(plugin_name, family, model)

        def make_driver() -> Driver:
            driver: Driver = spec.factory(endpoint, handle, self.settings)
            return driver

        supervisor = DriverSupervisor(make_driver, handle, self.settings, handle.log)
        task = asyncio.create_task(supervisor.run_forever(), name=f"device {shown}")
        managed = ManagedDevice(url=shown, plugin=plugin_name, handle=handle, supervisor=supervisor, task=task)
        self.by_url[shown] = managed
        return managed

    def find(self, device_id_or_url: str) -> ManagedDevice | None:
        managed = self.by_url.get(redact_url(device_id_or_url)) if "://" in device_id_or_url else None
        if managed is not None:
            return managed
        for managed in self.by_url.values():
            if managed.handle.device_id == device_id_or_url:
                return managed
        return None

    def _capabilities(self, plugin_name: str, family: str | None, model: str | None) -> Capabilities | None:
        declared = self._plugins.call_one(plugin_name, "device_capabilities", family=family, model=model)
        if declared is None or isinstance(declared, Capabilities):
            return declared
        log.error("plugin %s: device_capabilities returned %r, not Capabilities; ignored", plugin_name, declared)
        return None

    async def remove(self, device_id_or_url: str) -> bool:
        """Stop the driver (it closes the device cleanly) and forget the device."""
        managed = self.find(device_id_or_url)
        if managed is None:
            return False
        del self.by_url[managed.url]
        managed.task.cancel()
        await asyncio.gather(managed.task, return_exceptions=True)
        if managed.handle.device_id is not None:
            self._store.remove_device(managed.handle.device_id)
            managed.handle.release()
            self._buckets.pop(managed.handle.device_id, None)
        return True

    async def close(self) -> None:
        """Stop every driver; each closes its device (metering off) before its task ends."""
        managed = list(self.by_url.values())
        for entry in managed:
            entry.task.cancel()
        await asyncio.gather(*(entry.task for entry in managed), return_exceptions=True)

    async def apply(self, command: Command) -> CommandResult:
        """Route a command to the owning plugin's control hook; never raises, returns a result."""
        managed = self.find(command.device_id)
        driver = managed.driver if managed is not None else None
        device = self._store.get(command.device_id)
        try:
            if managed is None:
                raise DeviceUnavailableError(f"unknown device {command.device_id!r}")
            if driver is None or device is None or not device.online:
                raise DeviceUnavailableError(f"device {command.device_id} is not connected")
            if command.channel is not None and device.channel(command.channel) is None:
                raise DeviceUnavailableError(f"device {command.device_id} has no channel {command.channel}")
            # the one place every edge's command meets the family's declared limits, before the plugin
            if device.capabilities is not None:
                device.capabilities.check(command, device.model or device.family or "this device")
            self._admit(command.device_id)
            result = await self._plugins.call_async(
                managed.plugin,
                "apply_command",
                self.command_timeout_s,
                driver=driver,
                command=command,
            )
        except CommandError as exc:
            return exc.result()
        except PluginError as exc:
            return CommandResult(ok=False, error=str(exc), code="timeout")
        except Exception as exc:  # a plugin bug must not take the edge (MQTT, REST) down with it
            log.exception("plugin %s failed on %s", managed.plugin if managed else "?", command)
            return CommandResult(ok=False, error=f"plugin error: {exc}", code="plugin_error")
        if not isinstance(result, CommandResult):
            return CommandResult(ok=False, error="the plugin does not implement controls", code="not_supported")
        return result

    def _admit(self, device_id: str) -> None:
        """Refuse a command beyond the device's rate before anything is sent: a flood (a stuck fader, a script
        in a loop) is answered with a clear error and never reaches the receiver."""
        rate = self.control_rate_per_s
        if rate is None:
            return
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = self._buckets[device_id] = TokenBucket(rate, max(1.0, rate))
        if not bucket.take():
            raise RateLimitedError(f"more than {rate:g} commands per second for {device_id}; this one was not sent")

    def health(self) -> list[dict[str, Any]]:
        return [managed.health() for managed in self.by_url.values()]
