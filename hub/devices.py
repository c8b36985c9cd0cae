"""The device manager: one supervised driver per device URL, and the control path back to plugins.

Data flows driver -> :class:`DeviceHandle` -> state store. Commands flow edge ->
:meth:`DeviceManager.apply` -> the device's ``Driver.apply``, timed and bounded as the plugin's code.
Each device runs in its own task, so one device that hangs or crashes never stalls another.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from hub import names
from hub.clock import SYSTEM_CLOCK, Clock
from hub.descriptors import DescriptorBudget
from hub.drivers import (
    ID_OPTION,
    MAX_MEMORY_BYTES,
    ConnectAgainError,
    DeviceSink,
    Driver,
    DriverSettings,
    Endpoint,
    EndpointError,
    applying_by,
)
from hub.fieldcheck import FieldRules, checked, merge_rules, model_rules
from hub.hookspecs import DriverSpec
from hub.model import (
    CONFIRMED_VALUE,
    EXPIRED_PREFIX,
    MAX_CHANNELS,
    RESULT_CODES,
    Capabilities,
    Channel,
    ChannelNotFoundError,
    Command,
    CommandError,
    CommandExpiredError,
    CommandResult,
    CommandTimeoutError,
    Device,
    DeviceUnavailableError,
    deadline_passed,
)
from hub.plugins import PluginError, PluginHost
from hub.redact import redact
from hub.state import ChannelWriter, StateStore, Subscription
from hub.supervisor import DriverSupervisor
from hub.text import DEFAULT_TEXT_WIDTH, URL_PREVIEW_CHARS, device_text, id_safe, invisible, preview, strip_blank

log = logging.getLogger("hub.devices")
T = TypeVar("T")

# Text fields by width (the checks are the same for every device of a family): channel, device, merge rules
_RULES: dict[int, tuple[FieldRules, FieldRules, FieldRules]] = {}
# What a device's identity (DeviceManager.identities) is made of: a change in any is written.
IDENTITY_FIELDS: Final = frozenset({"family", "model", "firmware", "name"})
# A serial or MAC longer than this is no serial; characters that would split or widen an MQTT topic go.
MAX_ID_CHARS = 64
_ID_UNSAFE = re.compile(r"[\s/+#]")


def id_text(value: str) -> str:
    """A URL's ``id`` option or a device's serial as a piece of a device id (docs/model.md, Device ids): without
    whitespace or invisible format characters (U+200B, U+FEFF …) at either end nor control characters, cut to
    MAX_ID_CHARS; inside, whitespace, ``/``, ``+``, ``#`` and the invisible characters become ``_``, so no two
    ids look alike in an MQTT tool yet name other topics. Text without invisible characters gives the id it
    always gave (existing topics and Home Assistant entities depend on it)."""
    text = _ID_UNSAFE.sub("_", device_text(strip_blank(value), MAX_ID_CHARS))
    return "".join("_" if invisible(char) else char for char in text)


# A driver's own timeout for a command (io_timeout_s, as long as command_timeout_s by default) names what the
# device did not confirm: the hub's bound, for a driver that never returns, comes this much later.
DRIVER_TIMEOUT_GRACE_S: Final = 1.0

# what a device the plugin does not monitor (UnsupportedDeviceError) reports and accepts: nothing
NO_CAPABILITIES: Final = Capabilities(channel_fields=frozenset())
# A device whose capabilities the hub cannot know (its plugin declares none for the family it identified with, but
# does for those its spec lists): every reading None would show, no command
READ_ONLY: Final = Capabilities(channel_fields=frozenset(Channel.model_fields) - {"index", "updated_at", "tx_slots"})

# what a device that never identified itself shows without the API token, whatever kept it away
NO_ANSWER: Final = "no answer from device"


class UnknownSchemeError(EndpointError):
    """No loaded plugin handles this URL scheme."""


class DeviceMemories(Protocol):
    """Where the drivers' memories of their devices (DeviceSink.remember) are kept, as JSON text by the device's
    URL as shown (its password redacted): the hub's database (hub.persistence.device_memory) while the hub
    runs, :class:`TransientMemories` where there is none."""

    def recall(self, url: str) -> str | None: ...

    def remember(self, url: str, text: str) -> None: ...

    def forget(self, url: str) -> None: ...


class TransientMemories:
    """Memories for this run only: a device manager without a database (tests, ``DriverHarness``)."""

    def __init__(self) -> None:
        self._by_url: dict[str, str] = {}

    def recall(self, url: str) -> str | None:
        return self._by_url.get(url)

    def remember(self, url: str, text: str) -> None:
        self._by_url[url] = text

    def forget(self, url: str) -> None:
        self._by_url.pop(url, None)


def _whole_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _rules_for(width: int) -> tuple[FieldRules, FieldRules, FieldRules]:
    found = _RULES.get(width)
    if found is None:
        found = _RULES[width] = (*model_rules(width), merge_rules(width))
    return found


# The longest error text of a command result the hub passes on.
MAX_RESULT_TEXT = 300


class DeviceHandle(DeviceSink):
    """The sink one driver writes to; it binds the driver's reports to a device id in the store.

    It is the boundary between a plugin and the hub: every value is checked against the model here
    (:mod:`hub.fieldcheck`), so no plugin can put into the store what its readers cannot handle.
    """

    def __init__(
        self,
        store: StateStore,
        endpoint: Endpoint,
        vendor: str,
        device_id: str | None = None,
        claims: dict[str, str] | None = None,
        plugin: str = "?",
        text_width: int = DEFAULT_TEXT_WIDTH,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self.clock = clock
        self._monotonic = clock.monotonic
        self.plugin = plugin
        self.text_width = text_width
        self._channel_rules, self._device_rules, self._merge_rules = _rules_for(text_width)
        # fields already warned about: a plugin's mistake is logged once, then only counted
        self._warned: set[str] = set()
        # each device id's id-safe form (hub.text.id_safe) -> the URL of the handle that holds it, shared by
        # every handle of one manager
        self._claims = {} if claims is None else claims
        self.endpoint = endpoint
        self.vendor = vendor
        self.device_id = device_id
        self._last_heard = self._monotonic()
        # channel index -> its writer in the store, so a meter sample need not find the channel again
        self._writers: dict[int, ChannelWriter] = {}
        self._held_meters: list[Callable[[], None]] = []  # the driver's merges the store will call
        self.last_error: str | None = None
        self.protocol_errors = 0
        self.answered = False  # identified itself since the hub started: it is a device, not just a port
        # Driver.connect is under way: what it identifies is online only once connect returns, and a device
        # identified with no channels gets its family's capabilities only then (an unsupported model raises
        # after identify, and was published online with controls, then taken back, at every retry)
        self.connecting = False
        self._identified_connecting = False
        self._held_capabilities: tuple[Capabilities | None] | None = None  # (what to set,) when held
        self.released = False  # the device was removed: whatever its driver still reports goes nowhere
        self._recalled_unknown = False  # the driver recalled its memory before the device said who it is
        self._connected_again = False  # ... and was connected again for the memory its device id had
        self.on_identified: Callable[[DeviceHandle], None] | None = None
        # the device answered as none its plugin monitors (set_unsupported), and has not connected since
        self.unsupported = False
        # called when that changes: the manager keeps it, so that a restart does not offer its family's controls
        # to a device found unsupported, nor withhold them from one that connected since
        self.on_support_changed: Callable[[], None] | None = None
        # (old id, new id) whenever the device takes an id: the manager keeps its index by id with it
        self.on_id_changed: Callable[[str | None, str], None] | None = None
        # (URL it held the id under, id) when this device took over the id of an offline device reporting
        # the same serial: the same receiver, moved to another address or port
        self.on_moved: Callable[[str, str], None] | None = None
        # (family, model) -> what such a device reports and accepts; set by the manager to ask the owning plugin
        self.capabilities_of: Callable[[str | None, str | None], Capabilities | None] = lambda family, model: None
        # what a driver says of its own device's capabilities (update_capabilities), as the hub can use it
        self.usable_capabilities: Callable[[object], Capabilities | None] = lambda declared: None
        # where the driver's memory of the device is kept (recall, remember); the manager's
        self.memories: DeviceMemories = TransientMemories()
        self.log = logging.LoggerAdapter(
            logging.getLogger(f"hub.device.{vendor}"), {"device": device_id or redact(endpoint.url)}
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
        if self.released:  # a driver's task that outlived its removal must not bring the device back
            return
        identity = checked(
            {"family": family, "model": model, "firmware": firmware, "name": name}, self._device_rules, self._refused
        )
        if (
            isinstance(channel_count, bool)
            or not isinstance(channel_count, int)
            or not 0 <= channel_count <= MAX_CHANNELS
        ):
            self._refused("channel_count", channel_count, f"not a whole number from 0 to {MAX_CHANNELS}: taken as 0")
            channel_count = 0
        # the stablest name there is: one the user gave, a serial or MAC, and only then the address
        given = self.endpoint.options.get(ID_OPTION) or unique_id
        device_id = self._claim(f"{self.vendor}-{self._id_suffix(given)}", serial=bool(given))
        if self.device_id is not None and self.device_id != device_id:
            self.log.warning("device at %s is now %s (was %s)", redact(self.endpoint.url), device_id, self.device_id)
            self._store.remove_device(self.device_id)
        if self.device_id != device_id and self.on_id_changed is not None:
            self.on_id_changed(self.device_id, device_id)
        newly = self.device_id != device_id
        self.device_id = device_id
        self.log.extra = {"device": device_id}
        self._memory_follows(device_id, newly)
        device = self._store.get(device_id)
        if device is None:
            self._store.add_device(
                Device(id=device_id, vendor=self.vendor, host=self.endpoint.host, port=self.endpoint.port)
            )
        elif (device.host, device.port) != (self.endpoint.host, self.endpoint.port):  # moved here
            self._store.add_device(device.model_copy(update={"host": self.endpoint.host, "port": self.endpoint.port}))
        capabilities = self.capabilities_of(identity.get("family"), identity.get("model"))
        if self.connecting and channel_count == 0:
            # how a driver names a model it does not monitor before it raises UnsupportedDeviceError: it comes
            # online, with its capabilities, only once connect returns. A new device's None would read as
            # "accepts everything". Any other device is online at once, as a consumer expects of a receiver
            # that answered (no "offline" said first for a device that is coming up)
            self._identified_connecting = True
            self._held_capabilities = (capabilities,)
            held_back = {"capabilities": NO_CAPABILITIES} if device is None else {}
            self._store.update_device(device_id, {**identity, **held_back})
        else:
            self._store.update_device(device_id, {**identity, "capabilities": capabilities})
        self._store.set_channel_count(device_id, channel_count)
        if not self._identified_connecting:
            self._store.set_online(device_id, True)
        self._last_heard = self._monotonic()
        self.answered = True
        if self.on_identified is not None:
            self.on_identified(self)

    @property
    def address_id(self) -> str:
        """The id the device's URL gives it (docs/model.md): from its ``id`` option, else its host and port. It is
        the device's id unless it reports a serial or another device holds that id; until the device has
        identified itself, the one it may be asked for by."""
        return f"{self.vendor}-{self._id_suffix(self.endpoint.options.get(ID_OPTION))}"

    def _id_suffix(self, unique_id: object) -> str:
        """The serial or MAC as a piece of a device id (a topic level on MQTT, a path segment in REST)."""
        if unique_id is not None and not isinstance(unique_id, str):
            self._refused("unique_id", unique_id, "not text: the id is made from host and port")
            unique_id = None
        suffix = id_text(unique_id) if unique_id else ""
        return suffix or self.endpoint.host_port_id

    def _claim(self, wanted: str, serial: bool) -> str:
        """The id this device may use: ``wanted`` unless another URL's device already holds it.

        Two URLs can name devices that identify alike: a TCP and a UDP receiver on the same host and port
        number, or one device added twice. Each then gets an id of its own instead of writing into the other:
        never one another device holds, however many there are (after the scheme and the address, a number).
        But an id made from a serial (or given with ``?id=``) held by a device that is offline now is this
        device's: the same receiver at a new address (DHCP, another port), which keeps its names, slots and
        history instead of becoming a second device beside a dead one.
        """
        scheme, place = self.endpoint.scheme, self.endpoint.host_port_id
        choices = [wanted, f"{wanted}-{scheme}", f"{wanted}-{scheme}-{place}"]
        if self.device_id is not None and (
            self.device_id in choices or self.device_id.startswith(f"{wanted}-{scheme}-{place}-")
        ):
            choices.insert(0, self.device_id)  # keep the id it had (e.g. restored from the store)
        numbered = (f"{wanted}-{scheme}-{place}-{number}" for number in itertools.count(2))
        moved_from: str | None = None
        # claimed by their id-safe form: 'a.b' and 'a_b' would be one device in Home Assistant
        for choice in itertools.chain(choices, numbered):
            holder = self._claims.get(id_safe(choice), self.endpoint.url)
            if holder == self.endpoint.url:
                break
            if choice == wanted and serial and self._offline(choice):
                moved_from = holder
                break
        if moved_from is not None:
            self.log.warning("device %s moved from %s to %s", wanted, redact(moved_from), redact(self.endpoint.url))
        elif choice != wanted:
            self.log.warning(
                "another device already is %s; this one (%s) is %s", wanted, redact(self.endpoint.url), choice
            )
        self._unclaim()
        self._claims[id_safe(choice)] = self.endpoint.url
        if moved_from is not None and self.on_moved is not None:
            self.on_moved(moved_from, choice)
        return choice

    def _offline(self, device_id: str) -> bool:
        device = self._store.get(device_id)
        return device is not None and not device.online

    def _unclaim(self) -> None:
        if self.device_id is not None and self._claims.get(id_safe(self.device_id)) == self.endpoint.url:
            del self._claims[id_safe(self.device_id)]

    def release(self) -> None:
        """Give the id up (the device was removed) and take nothing more from the driver."""
        self.released = True
        self._unclaim()

    def update_capabilities(self, capabilities: Capabilities) -> None:
        if self.device_id is None or self.released:
            return
        usable = self.usable_capabilities(capabilities)
        if usable is None:
            return
        if self.connecting and self._held_capabilities is not None:  # identify held them: they wait the same
            self._held_capabilities = (usable,)
        else:
            self._store.update_device(self.device_id, {"capabilities": usable})

    def update_device(self, fields: Mapping[str, Any]) -> None:
        self._last_heard = self._monotonic()
        if self.device_id is None:
            self._unidentified("update_device")
        elif self._is_mapping(fields):
            self._store.update_device(self.device_id, checked(fields, self._device_rules, self._refused))

    def _unidentified(self, call: str) -> None:
        """A report before ``identify``: the hub cannot tell whose it is, so it is dropped, said once per device
        at debug level (``plugin_log_levels``). Not a warning: a driver that keeps what it hears and reports it
        all after ``identify`` (the G4 driver) does right; one that does not loses that state unseen."""
        if self.released or "before identify" in self._warned:
            return
        self._warned.add("before identify")
        self.log.debug(
            "plugin %s called sink.%s before sink.identify: dropped (identify first, then report); "
            "further reports before identify are dropped unsaid",
            self.plugin,
            call,
        )

    def update_channel(self, index: int, fields: Mapping[str, Any]) -> None:
        self._last_heard = self._monotonic()
        writer = self._writers.get(index) if index.__class__ is int else None
        if writer is None or not writer.live:
            if self.device_id is None:
                self._unidentified("update_channel")
                return
            if self.released or not self._is_mapping(fields):
                return
            if not _whole_in(index, 1, MAX_CHANNELS):
                self._refused("channel index", index, f"not a channel number from 1 to {MAX_CHANNELS}: dropped")
                return
            writer = self._store.channel_writer(self.device_id, index)
            if writer is None:
                return
            self._writers[index] = writer
        elif fields.__class__ is not dict and not self._is_mapping(fields):
            return
        writer.update(checked(fields, self._channel_rules, self._refused))

    def defer_meters(self, merge: Callable[[], None]) -> None:
        if not self._held_meters:
            self._store.defer_meters(self._merge_held_meters)
        self._held_meters.append(merge)

    def _merge_held_meters(self) -> None:
        merges, self._held_meters = self._held_meters, []
        # a merge writes meter fields only: its updates are checked against those, which costs the driver's
        # other updates nothing (the rules are swapped for the merge, not tested per update)
        rules, self._channel_rules = self._channel_rules, self._merge_rules
        try:
            for merge in merges:
                try:
                    merge()
                except Exception as exc:  # one plugin's decoder must not stop the other devices' levels
                    self._refused("deferred meters", exc, "raised while merging: dropped")
        finally:
            self._channel_rules = rules

    def _is_mapping(self, fields: object) -> bool:
        if fields.__class__ is dict or isinstance(fields, Mapping):
            return True
        self._refused("fields", fields, "not a mapping of field names to values: dropped")
        return False

    def _refused(self, name: str, value: Any, why: str) -> None:
        """A value the model cannot hold: counted as this device's protocol error, logged once per field."""
        self.protocol_errors += 1
        if name in self._warned:
            return
        self._warned.add(name)
        self.log.warning(
            "plugin %s reported %s = %s, %s (a protocol error; further ones for %s are only counted)",
            self.plugin,
            name,
            preview(value),
            why,
            name,
        )

    def heard(self, readings: int = 0) -> None:
        self._last_heard = self._monotonic()
        if readings.__class__ is int and readings >= 0:
            self._store.readings_received += readings
        else:  # the hub-wide count on /metrics must stay a count
            self._refused("heard(readings)", readings, "not a count of readings: not counted")

    def protocol_error(self, detail: str) -> None:
        self.protocol_errors += 1
        self.log.debug("unparsable data: %s", detail)

    def _memory_key(self) -> str:
        """Where the driver's memory is kept: under the device's id, which follows the device to another
        address; under its URL only until the device first says who it is."""
        if self.device_id is None:
            return redact(self.endpoint.url)
        return self.device_id

    def _memory_follows(self, device_id: str, newly: bool = False) -> None:
        """The device at this URL is ``device_id``: what its driver kept under the URL before it said so goes
        under the id, unless the id has a memory already (the device moved here from another address). Then
        a driver that recalled before the device ``newly`` took the id numbered without it: its connection
        is made again."""
        url = redact(self.endpoint.url)
        kept, fresh = self.memories.recall(device_id), self.memories.recall(url)
        if fresh is not None:
            self.memories.forget(url)
            if kept is None:
                self.memories.remember(device_id, fresh)
        if newly and kept is not None and kept != fresh and self._recalled_unknown and not self._connected_again:
            self._connected_again = True
            raise ConnectAgainError(f"device {device_id} moved here, and its driver's memory with it")

    def recall(self) -> Any:
        url = self._memory_key()
        self._recalled_unknown = self._recalled_unknown or self.device_id is None
        text = self.memories.recall(url)
        if text is None and self.device_id is not None:  # kept by URL before the device said who it is
            self._memory_follows(self.device_id)
            text = self.memories.recall(url)
        if text is None:
            return None
        why = f"larger than {MAX_MEMORY_BYTES} bytes" if len(text.encode()) > MAX_MEMORY_BYTES else None
        if why is None:
            try:
                return json.loads(text)
            except (ValueError, RecursionError) as exc:  # RecursionError: nested past the interpreter's limit
                why = f"not JSON ({preview(str(exc))})"
        # the driver starts afresh, as with nothing kept: a damaged row must not keep the device from being
        # watched, nor be warned about at every connection
        self.log.warning("the memory plugin %s kept for this device is %s: ignored and dropped", self.plugin, why)
        self.memories.forget(url)
        return None

    def remember(self, value: Any) -> None:
        if self.released:  # a driver's task that outlived its removal must not keep anything again
            return
        try:
            text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError, RecursionError) as exc:
            self._refused("memory", value, f"not JSON ({preview(str(exc))}): not kept")
            return
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError:  # a lone surrogate a device sent: JSON's escape keeps it, UTF-8 cannot
                text = json.dumps(value, allow_nan=False, separators=(",", ":"))
        if len(text.encode()) > MAX_MEMORY_BYTES:
            self._refused("memory", value, f"larger than {MAX_MEMORY_BYTES} bytes as JSON: not kept")
            return
        found = _non_text_key(value)
        if found is not None:  # json.dumps writes {1: "A"} as {"1": "A"}: recall would give another shape back
            self._refused("memory", value, f"a dict key {preview(found[0])} is not text: not kept")
            return
        self.memories.remember(self._memory_key(), text)

    # LinkState (for the supervisor)

    def last_heard(self) -> float:
        return self._last_heard

    def set_connecting(self, connecting: bool) -> None:
        self.connecting = connecting
        if connecting:
            self._identified_connecting = False
            self._held_capabilities = None

    def set_online(self, online: bool, error: str | None = None) -> None:
        if online:
            self._last_heard = self._monotonic()
        else:
            self.last_error = error
        # a device comes online once its driver's connect has returned, if the driver identified it (or when it
        # identifies later); the supervisor takes it down. A removed device leaves the store instead: said
        # offline first, it would be said so on MQTT, where another hub may be watching it now
        identified, self._identified_connecting = self._identified_connecting, False
        held, self._held_capabilities = self._held_capabilities, None
        if self.device_id is None or self.released:
            return
        if not online:
            self._store.set_online(self.device_id, False)
            return
        if held is not None:
            self._store.update_device(self.device_id, {"capabilities": held[0]})
        if identified:
            self._store.set_online(self.device_id, True)
        if self.unsupported:
            self.unsupported = False
            self._support_changed()

    def set_unsupported(self) -> None:
        # no controls (Home Assistant, the board) that could only ever answer "not connected"; its next
        # identify (another model at the address) starts from the family's declaration again
        if self.device_id is not None and not self.released:
            self._store.update_device(self.device_id, {"capabilities": NO_CAPABILITIES})
            self.unsupported = True
            self._support_changed()

    def _support_changed(self) -> None:
        if self.on_support_changed is not None:
            self.on_support_changed()


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

    @property
    def device_id(self) -> str | None:
        return self.handle.device_id

    @property
    def known_id(self) -> str:
        """Its id, or until it is known (the device has not answered since it was added) the one its URL gives."""
        return self.handle.device_id or self.handle.address_id

    def health(self, detail: bool = False) -> dict[str, Any]:
        """The connection's health. Until the device has identified itself, anyone could have added any
        host and port, so unless ``detail`` is asked for (the API token holder's view), a closed port, a
        silent host and an open port that speaks no known protocol all read alike: not connected,
        ``NO_ANSWER``, and no attempts, reconnects or protocol errors counted (how fast attempts grow, and
        whether one is held open, tells a closed port from an open one; an unparsable answer, something
        listening). The counters show their true values once the device has identified: from this view they
        only ever rise. The reason is in the hub's log. A driver that could not even be built (a bad URL
        option, the hub's own open-file limit) touched no network: its error is shown."""
        if detail or self.handle.answered:
            return self._health(self.supervisor.last_error)
        error = self.supervisor.last_error
        return self._health(error if self.supervisor.last_error_local else NO_ANSWER) | {
            "connected": False,
            "connected_since": None,
            "attempts": 0,
            "reconnects": 0,
            "protocol_errors": 0,
        }

    def _health(self, error: str | None) -> dict[str, Any]:
        return {
            "url": self.url,
            "device_id": self.handle.device_id,
            "plugin": self.plugin,
            "connected": self.supervisor.connected_since is not None,
            "connected_since": self.supervisor.connected_since,
            "attempts": self.supervisor.attempts,
            "reconnects": self.supervisor.reconnects,
            "last_error": None if error is None else redact(error),
            "protocol_errors": self.handle.protocol_errors,
        }


def _non_text_key(value: Any) -> tuple[Any] | None:
    """(key,) for the first dict key in ``value`` (nested in dicts and lists) that is not text (None is one),
    else None. Walked without recursion: ``value`` has passed json.dumps, so it is no deeper than the
    interpreter's limit, but may be close to it."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    return (key,)
                pending.append(inner)
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return None


def _plugin_error(plugin: str, what: str) -> CommandResult:
    return CommandResult(ok=False, error=f"plugin {plugin} {what}", code="plugin_error")


class RateLimitedError(CommandError):
    """More commands for one device than its rate allows; this one was not sent."""

    code = "rate_limited"


class TokenBucket:
    """``rate`` commands per second on average, a burst of up to ``burst`` at once."""

    def __init__(self, rate: float, burst: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock.monotonic()

    def take(self) -> bool:
        now = self._clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def _scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


class DeviceManager:
    """Adds and removes devices by URL, supervises their drivers and routes commands to them."""

    def __init__(
        self,
        plugins: PluginHost,
        store: StateStore,
        settings: DriverSettings,
        command_timeout_s: float = 5.0,
        control_rate_per_s: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
        max_connecting: int = 200,
        descriptors: DescriptorBudget | None = None,
    ) -> None:
        self._plugins = plugins
        self._clock = clock
        self._store = store
        self.settings = settings
        self.command_timeout_s = command_timeout_s
        self.control_rate_per_s = control_rate_per_s
        self._buckets: dict[str, TokenBucket] = {}
        self._command_locks: dict[str, asyncio.Lock] = {}
        # the drivers' memories of their devices: the hub hands its database's before it adds a device
        self.memories: DeviceMemories = TransientMemories()
        # what each device last said it is (:func:`identity_text`), by URL as shown: a device down when the hub
        # starts is in the store from the start, offline with its channels; the hub hands its database's too
        self.identities: DeviceMemories = TransientMemories()
        self._identity_changes: Subscription | None = None
        self._identity_writer: asyncio.Task[None] | None = None
        # (URL, id) when a device moved away from the URL (DeviceHandle.on_moved): set by the hub to forget it
        self.on_moved: Callable[[str, str], None] | None = None
        self.by_url: dict[str, ManagedDevice] = {}
        # Endpoint.identity -> its entry: another spelling of a managed URL is that device, not a second one
        self._by_identity: dict[str, ManagedDevice] = {}
        # device id -> its entry: finding a device by id is a lookup, not a scan of every device. A device whose
        # id is not known yet (it has not answered since it was added) is under the id its URL gives it.
        self._by_id: dict[str, ManagedDevice] = {}
        self._claims: dict[str, str] = {}
        # shown URL -> the addresses its host had when its device last identified itself, and the pairs of URLs
        # already said to be one receiver given two ways (look_for_twin)
        self._reached_at: dict[str, frozenset[str]] = {}
        self._twins_said: set[frozenset[str]] = set()
        # (device, family) for each device said to identify with a family its driver spec does not list
        self._unlisted_families: set[tuple[str, str]] = set()
        # Every driver's connect (TCP, identification, the first full read) passes this gate. A hub starting
        # at a site of thousands of receivers otherwise asked all of them at once, could not read the answers
        # within the connect timeout, and marked most of them unavailable (its own MQTT connection timed out
        # too); devices waiting their turn are not timed.
        self._connecting = asyncio.Semaphore(max_connecting)
        # Every driver holds what its spec declares of these from before its connect until its close: devices
        # beyond what the open-file limit leaves room for wait, not connected, and the web server, MQTT and SQLite
        # keep the descriptors they need (hub.descriptors). None (a manager in tests, drivers of no socket): no bound.
        self.descriptors = descriptors

    def driver_spec(self, url: str) -> DriverSpec | None:
        """The driver spec for ``url``'s scheme, None when no plugin loaded handles it (the URL is not checked)."""
        found = self._plugins.drivers().get(_scheme_of(url))
        return None if found is None else found[0]

    def resolve(self, url: str) -> tuple[Endpoint, str, Any]:
        """Parse ``url`` and find the plugin and driver spec for its scheme; raise EndpointError."""
        scheme = _scheme_of(url)
        drivers = self._plugins.drivers()
        if scheme not in drivers:
            known = ", ".join(f"{name}://" for name in sorted(drivers)) or "none loaded"
            raise UnknownSchemeError(
                f"no plugin handles {preview(redact(url), URL_PREVIEW_CHARS)} (known schemes: {known})"
            )
        spec, plugin_name = drivers[scheme]
        endpoint = Endpoint.parse(url, spec.default_port)
        self._plugins.check_url(plugin_name, spec, endpoint)
        return endpoint, plugin_name, spec

    def add(self, url: str, device_id: str | None = None) -> ManagedDevice:
        """Start supervising the device at ``url``. Adding a URL twice returns the existing entry (even with
        another password: :meth:`reconnect` uses the new one).

        Devices are listed under the redacted URL, so a password in it never reaches a log, MQTT or REST.
        Another spelling of a managed URL (``SHURE://…/``, the default port written out) returns its entry too.
        """
        endpoint, plugin_name, spec = self.resolve(url)
        existing = self._by_identity.get(endpoint.identity)
        if existing is not None:
            return existing
        shown = redact(endpoint.url)
        remembered = self._remembered(shown, endpoint, spec, plugin_name, device_id)
        if remembered is not None:
            device_id = remembered.id
            if remembered.id not in self._store.devices:  # listed offline, with its channels, until it answers
                self._store.add_device(remembered)
        self._watch_identities()
        handle = DeviceHandle(
            self._store, endpoint, spec.vendor, device_id, self._claims, plugin_name, spec.text_width, self._clock
        )
        handle.capabilities_of = lambda family, model: self._capabilities(
            plugin_name, family, model, spec, handle.device_id or shown
        )
        handle.usable_capabilities = lambda declared: self._plugins.usable_capabilities(
            plugin_name, declared, "update_capabilities", "update_capabilities"
        )
        handle.memories = self.memories
        # found unsupported in a run before: kept so until it connects (remembered_device gave it no capabilities)
        handle.unsupported = remembered is not None and remembered.capabilities is NO_CAPABILITIES
        timer = self._plugins.timer

        def make_driver() -> Driver:
            driver: Driver = timer.call(
                plugin_name, "DriverSpec.factory", spec.factory, endpoint, handle, self.settings
            )
            return driver

        def timed(what: str, awaitable: Awaitable[T]) -> Awaitable[T]:
            return self._plugins.awaited(plugin_name, what, awaitable)

        supervisor = DriverSupervisor(
            make_driver,
            handle,
            self.settings,
            handle.log,
            plugin=plugin_name,
            url=shown,
            timed=timed,
            clock=self._clock,
            gate=self._connecting,
            descriptors=self.descriptors,
            descriptors_per_connection=spec.descriptors,
        )
        task = asyncio.create_task(supervisor.run_forever(), name=f"device {shown}")
        managed = ManagedDevice(url=shown, plugin=plugin_name, handle=handle, supervisor=supervisor, task=task)
        self.by_url[shown] = managed
        self._by_identity[endpoint.identity] = managed
        self._by_id.setdefault(managed.known_id, managed)
        handle.on_id_changed = lambda old, new: self._reindex(managed, old, new)
        handle.on_support_changed = lambda: self._keep_identity(managed)
        handle.on_moved = self._moved
        return managed

    def _remembered(
        self, url: str, endpoint: Endpoint, spec: DriverSpec, plugin_name: str, device_id: str | None
    ) -> Device | None:
        """The device at ``url`` as it last identified itself (a run before this one), offline and with no
        reading; None when nothing usable is kept, or it was another id than the one it is added with."""
        text = self.identities.recall(url)
        remembered = remembered_device(text, spec.vendor, endpoint) if text is not None else None
        if remembered is None or device_id not in (None, remembered.id):
            return None
        if remembered.capabilities is None:  # else it was unsupported: no controls until it says otherwise
            remembered.capabilities = self._capabilities(
                plugin_name, remembered.family, remembered.model, spec, remembered.id
            )
        return remembered

    def _watch_identities(self) -> None:
        if self._identity_changes is None:
            # no coalescing window: it would wait on the hub's clock (a simulated one in tests), and these changes
            # are few (a device identifying, a name given); what comes in while one is written is one batch
            self._identity_changes = changes = self._store.subscribe(IDENTITY_FIELDS)
            self._identity_writer = asyncio.create_task(self._write_identities(changes), name="device identities")

    async def _write_identities(self, changes: Subscription) -> None:
        async for batch in changes:
            self._keep_identities(batch)

    def _keep_identities(self, batch: Mapping[tuple[str, int | None], object]) -> None:
        """Keep what the devices in ``batch`` now say they are; only a device online (it identified itself this
        run) says anything: one still offline holds what was kept."""
        for device_id in {device_id for device_id, _ in batch}:
            device = self._store.get(device_id)
            managed = self._by_id.get(device_id)
            if device is not None and device.online and managed is not None and managed.device_id == device_id:
                self._keep_identity(managed)

    def _keep_identity(self, managed: ManagedDevice) -> None:
        """Keep what ``managed``'s device said it is this run, and whether its plugin found it unsupported."""
        device = self._store.get(managed.device_id) if managed.device_id is not None else None
        if device is not None:
            self.identities.remember(managed.url, identity_text(device, unsupported=managed.handle.unsupported))

    async def reconnect(self, url: str) -> ManagedDevice:
        """Connect the device already managed under ``url``'s shown URL with ``url`` from now on (its password
        changed): its driver is stopped and a new one started with ``url``; its id and state stay."""
        old = self.find(url)
        assert old is not None, "reconnect() is for a managed device"  # nosec B101: a caller's bug
        await self._stop(old)
        return self.add(url, old.handle.device_id)

    def _moved(self, url: str, device_id: str) -> None:
        if self.on_moved is not None:
            self.on_moved(url, device_id)

    def _reindex(self, managed: ManagedDevice, old: str | None, new: str) -> None:
        indexed = old if old is not None else managed.handle.address_id
        if self._by_id.get(indexed) is managed:
            del self._by_id[indexed]
        self._by_id[new] = managed

    def find(self, device_id_or_url: str) -> ManagedDevice | None:
        if "://" in device_id_or_url:
            try:
                managed = self._by_identity.get(self.resolve(device_id_or_url)[0].identity)
            except ValueError:  # EndpointError, or urllib refusing it outright: no device of ours
                managed = None
            if managed is not None:
                return managed
        return self._by_id.get(device_id_or_url)

    def _capabilities(
        self, plugin_name: str, family: str | None, model: str | None, spec: DriverSpec, device: str
    ) -> Capabilities | None:
        """What ``plugin_name`` declares for a device of ``family`` (checked in hub.capcheck). A family its driver
        spec does not list (a typo in ``sink.identify`` or in ``DriverSpec.families``) is said once per device;
        when the plugin declares limits for the families it lists but none for this one, the device is watched
        without controls (READ_ONLY): its None would read as "accepts everything", and a command the plugin
        meant to be checked (9999 MHz) would reach its driver unchecked."""
        declared = self._plugins.device_capabilities(plugin_name, family, model)
        if family is None or family in spec.families:
            return declared
        if declared is not None:
            outcome = "its device_capabilities for that family are used, though `wmhub plugins` never checks them"
        elif any(self._plugins.device_capabilities(plugin_name, listed, None) is not None for listed in spec.families):
            declared = READ_ONLY
            outcome = (
                "the plugin declares no capabilities for it, so the hub cannot check its commands: it is watched "
                "with no controls (every command answered not_supported)"
            )
        else:
            outcome = "as for its other families, it has every entity and only the plugin's own checks"
        if (device, family) not in self._unlisted_families:
            self._unlisted_families.add((device, family))
            listed = ", ".join(repr(name) for name in spec.families) or "none"
            log.warning(
                "plugin %s: %s identified as family %r, which its DriverSpec (%s://) does not list (families: %s; "
                "a typo in sink.identify or DriverSpec.families?): %s",
                plugin_name,
                device,
                family,
                spec.scheme,
                listed,
                outcome,
            )
        return declared

    async def remove(self, device_id_or_url: str) -> bool:
        """Stop the driver (it closes the device cleanly) and forget the device, its driver's memory too."""
        managed = self.find(device_id_or_url)
        if managed is None:
            return False
        device_id = managed.handle.device_id
        # the id's state is this device's unless another URL's device holds the id now (it moved there, or
        # this one was restored with the id and never answered); asked before its stop lets the id go
        owned = device_id is not None and self._claims.get(id_safe(device_id), managed.handle.endpoint.url) == (
            managed.handle.endpoint.url
        )
        await self._stop(managed)
        self.memories.forget(managed.url)  # after the stop: a driver ending now keeps nothing (released)
        self.identities.forget(managed.url)
        if device_id is not None and owned:
            self.memories.forget(device_id)  # kept when the device moved on: its id and memory are there now
            self._store.remove_device(device_id)
            self._buckets.pop(device_id, None)
            self._command_locks.pop(device_id, None)
        return True

    def look_for_twin(self, handle: DeviceHandle) -> None:
        """Warn, once, when the device that just identified itself is reached at an address and port another
        device of its scheme is reached at: one receiver given two ways (``shure://10.0.0.5`` and
        ``shure://rx1.venue.lan``), watched twice and coordinated against itself (a critical frequency conflict
        of each channel with its twin). A host name counts with the addresses its driver's own lookup gave
        (hub.names.answered): nothing is asked of DNS here, neither waited for nor sent for a device whose
        plugin reaches it without a lookup."""
        managed = self._by_identity.get(handle.endpoint.identity)
        if managed is None or managed.handle is not handle:
            return
        endpoint = managed.handle.endpoint
        addresses = _addresses_of(endpoint)
        if not addresses:
            return
        self._reached_at[managed.url] = addresses
        for other in list(self.by_url.values()):
            there = other.handle.endpoint
            if other is managed or (there.scheme, there.port) != (endpoint.scheme, endpoint.port):
                continue
            shared = addresses & self._reached_at.get(other.url, frozenset())
            pair = frozenset((managed.url, other.url))
            if shared and pair not in self._twins_said:
                self._twins_said.add(pair)
                log.warning(
                    "%s and %s are one receiver (both reach %s port %d): it is watched twice and its channels "
                    "are checked against themselves; remove one of the two URLs",
                    other.url,
                    managed.url,
                    min(shared),
                    endpoint.port,
                )

    async def _stop(self, managed: ManagedDevice) -> None:
        """Stop its driver (it closes the device cleanly) and take it out of the indexes; the store keeps the
        state of its id."""
        del self.by_url[managed.url]
        del self._by_identity[managed.handle.endpoint.identity]
        self._reached_at.pop(managed.url, None)
        self._twins_said = {pair for pair in self._twins_said if managed.url not in pair}
        if self._by_id.get(managed.known_id) is managed:
            del self._by_id[managed.known_id]
        managed.handle.release()
        managed.task.cancel()
        await asyncio.gather(managed.task, return_exceptions=True)

    async def close(self) -> None:
        """Stop every driver; each closes its device (metering off) before its task ends. A change of identity
        not written yet (a name given just now) is written first."""
        if self._identity_changes is not None:
            self._keep_identities(self._identity_changes.drain())
            self._identity_changes.close()
            self._identity_changes = None
        managed = list(self.by_url.values())
        for entry in managed:
            entry.task.cancel()
        await asyncio.gather(*(entry.task for entry in managed), return_exceptions=True)
        if self._identity_writer is not None:
            self._identity_writer.cancel()
            await asyncio.gather(self._identity_writer, return_exceptions=True)
            self._identity_writer = None

    def _sendable(self, command: Command) -> tuple[ManagedDevice, Driver]:
        """The device and driver ``command`` goes to; raise the CommandError that refuses it unsent."""
        managed = self.find(command.device_id)
        driver = managed.driver if managed is not None else None
        device = self._store.get(command.device_id)
        if managed is None:
            raise DeviceUnavailableError(f"unknown device {command.device_id!r}")
        if driver is None or device is None or not device.online:
            raise DeviceUnavailableError(f"device {command.device_id} is not connected")
        if command.channel is not None and device.channel(command.channel) is None:
            raise ChannelNotFoundError(f"device {command.device_id} has no channel {command.channel}")
        # the one place every edge's command meets the family's declared limits, before the plugin
        if device.capabilities is not None:
            device.capabilities.check(command, device.model or device.family or "this device")
        return managed, driver

    def refusal(self, command: Command) -> CommandResult | None:
        """Why ``command`` would be refused before anything is sent (unknown or offline device, a value
        outside the family's limits), or None: an edge checks every part of a request before sending one."""
        try:
            self._sendable(command)
        except CommandError as exc:
            return exc.result()
        return None

    async def apply(self, command: Command, deadline: float | None = None) -> CommandResult:
        """Carry out a command on the device's driver (``Driver.apply``), timed and bounded like a hook call
        of its plugin; never raises, returns a result. ``deadline`` (the hub clock's ``now()``, seconds since
        the epoch) is when its sender stops waiting: a command that has not reached the driver by then is
        answered ``expired`` and not sent (docs/mqtt.md, "Deadlines")."""
        managed: ManagedDevice | None = None
        try:
            managed, driver = self._sendable(command)
            self._admit(command.device_id)
            # One command at a time per device, whichever edge sent it: a driver that re-sends an unanswered
            # set (SSCv1) would otherwise undo a later one already confirmed, and a reply that names no
            # request (Shure's ERR) would be charged to the wrong one.
            lock = self._command_locks.setdefault(command.device_id, asyncio.Lock())
            wait_s = self.command_timeout_s
            # A sender's deadline earlier than the hub's own bound ends the wait there: sent after it, the
            # command would change the receiver after its sender reported that it failed.
            expires_first = deadline is not None and deadline - self._clock.now() < wait_s
            if deadline is not None and expires_first:
                wait_s = max(0.0, deadline - self._clock.now())
            try:
                # A device that stopped answering would otherwise hold every later command for as long as all
                # those before it take (a fader's moves, then the mute), and send each long after its sender
                # gave up: a command waits at most command_timeout_s, then is answered without being sent.
                async with asyncio.timeout(wait_s):
                    await lock.acquire()
            except TimeoutError:
                if expires_first:
                    raise _expired(command) from None
                raise CommandTimeoutError(
                    f"not sent: {command.device_id} did not finish the commands before it within "
                    f"{self.command_timeout_s:g} s"
                ) from None
            try:
                # the lock may come free just as the deadline passes (or the clock stepped meanwhile)
                if deadline is not None and self._clock.now() > deadline:
                    raise _expired(command)
                managed, driver = self._sendable(command)  # it may have gone while this command waited
                try:
                    # the driver may wait before it sends (Shure: for answers to earlier requests): the deadline
                    # goes with the command, so that it does not send after it
                    with applying_by(deadline):
                        result = await self._plugins.call_bounded(
                            managed.plugin,
                            "Driver.apply",
                            self.command_timeout_s + DRIVER_TIMEOUT_GRACE_S,
                            driver.apply,
                            command,
                        )
                except CommandError as exc:  # the plugin's refusal: its message is the device's text, like an answer
                    result = exc.result()
            finally:
                lock.release()
        except CommandError as exc:
            return exc.result()
        except PluginError as exc:
            return CommandResult(ok=False, error=str(exc), code="timeout")
        except ConnectionError as exc:  # the link dropped under the command: an event of the network, not a bug
            why = preview(redact(str(exc)))
            shown = managed.url if managed is not None else command.device_id
            log.warning("%s: connection lost during %s: %s", shown, command, why)
            return CommandResult(
                ok=False,
                error=f"the connection to the device was lost before it confirmed; it may have been done ({why})",
                code="unavailable",
            )
        except Exception as exc:  # a plugin bug must not take the edge (MQTT, REST) down with it
            # raised before the driver's apply (checking the limits the plugin declared): still the plugin's
            found = managed or self.find(command.device_id)
            plugin = found.plugin if found is not None else "?"
            log.exception("plugin %s failed on %s", plugin, command)
            return _plugin_error(plugin, f"raised {type(exc).__name__}: {preview(str(exc))}")
        if not isinstance(result, CommandResult):
            log.error(
                "plugin %s answered %s with %s instead of a CommandResult", managed.plugin, command, preview(result)
            )
            return _plugin_error(managed.plugin, f"answered {preview(result)} instead of a CommandResult")
        if not _passable(result.value):  # REST, MQTT and the audit write the value as JSON
            log.error("plugin %s answered %s with the value %s", managed.plugin, command, preview(result.value))
            return _plugin_error(
                managed.plugin,
                f"answered with the value {preview(result.value)}: not text, a number, true, false or null",
            )
        expected = CONFIRMED_VALUE[command.kind]
        if result.ok and not expected.admits(result.value):
            log.error("plugin %s confirmed %s with the value %s", managed.plugin, command, preview(result.value))
            return _plugin_error(
                managed.plugin,
                f"confirmed {command.kind} with the value {preview(result.value)}: not {expected}",
            )
        return _shown(result, managed.handle.text_width)

    def _admit(self, device_id: str) -> None:
        """Refuse a command beyond the device's rate before anything is sent: a flood (a stuck fader, a script
        in a loop) is answered with a clear error and never reaches the receiver."""
        rate = self.control_rate_per_s
        if rate is None:
            return
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = self._buckets[device_id] = TokenBucket(rate, max(1.0, rate), self._clock)
        if not bucket.take():
            raise RateLimitedError(f"more than {rate:g} commands per second for {device_id}; this one was not sent")

    def health(self) -> list[dict[str, Any]]:
        return [managed.health() for managed in self.by_url.values()]


def _expired(command: Command) -> CommandExpiredError:
    # worded as the MQTT edge's refusal of a request that arrived late (hub.mqtt.messages.check_deadline)
    return CommandExpiredError(
        deadline_passed(f" while it waited for {command.device_id} to finish the commands before it")
    )


def identity_text(device: Device, unsupported: bool = False) -> str:
    """What a device says it is, as JSON text: its id, family, model, firmware and name, its channels' names by
    position (1 to its highest channel, null where it has none), the numbers of the channels it has
    (``channel_indexes``: a base with packs in slots 1 and 5 has those two, not 1 to 5), and whether its plugin
    found it unsupported (``UnsupportedDeviceError``), for :func:`remembered_device` at the next start. The names
    stay a list by position so that an earlier release, which reads that list alone, still reads the row."""
    names = {channel.index: channel.name for channel in device.channels}
    identity = {
        "id": device.id,
        "family": device.family,
        "model": device.model,
        "firmware": device.firmware,
        "name": device.name,
        "channels": [names.get(index) for index in range(1, max(names, default=0) + 1)],
        "channel_indexes": sorted(names),
        "unsupported": unsupported,
    }
    return json.dumps(identity, separators=(",", ":"), ensure_ascii=False)


def remembered_device(text: str, vendor: str, endpoint: Endpoint) -> Device | None:
    """The device :func:`identity_text` kept, offline at ``endpoint``: the channels it had (``channel_indexes``)
    hold their names and no reading, unreported (``Channel.reported``); one found unsupported has no capabilities
    (NO_CAPABILITIES), any other None, for its family's to be filled in; None when the text is not such an
    identity (a damaged row). An identity kept before "unsupported" was (a database of an earlier release) is of a
    supported device; one kept before "channel_indexes" was has channels 1 to the length of its list of names."""
    try:
        identity = json.loads(text)
        names = identity["channels"]
        if not isinstance(names, list) or len(names) > MAX_CHANNELS:
            raise TypeError("not a list of channel names")
        indexes = identity.get("channel_indexes", list(range(1, len(names) + 1)))
        if not _channel_numbers(indexes, len(names)):
            raise TypeError("not the numbers of its named channels")
        return Device(
            id=identity["id"],
            vendor=vendor,
            family=identity["family"],
            model=identity["model"],
            firmware=identity["firmware"],
            name=identity["name"],
            host=endpoint.host,
            port=endpoint.port,
            channels=[Channel(index=index, name=names[index - 1]) for index in indexes],
            capabilities=NO_CAPABILITIES if identity.get("unsupported") is True else None,
        )
    except (ValueError, TypeError, KeyError, RecursionError):  # ValidationError is a ValueError
        log.warning("the identity kept of %s is damaged: ignored", redact(endpoint.url))
        return None


def _channel_numbers(indexes: object, highest: int) -> bool:
    """Whether ``indexes`` is a list of channel numbers, rising, from 1 to ``highest`` (the length of the list of
    names they index), as :func:`identity_text` writes them."""
    if not isinstance(indexes, list):
        return False
    previous = 0
    for index in indexes:
        if type(index) is not int or not previous < index <= highest:
            return False
        previous = index
    return True


def _passable(value: object) -> bool:
    """A result value every edge can write, as a command's own value: text, a finite number within 64 bits,
    true, false or null (bytes or an object answered REST with 500 and left the MQTT set unanswered)."""
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    return isinstance(value, float) and math.isfinite(value)


def _shown(result: CommandResult, width: int) -> CommandResult:
    """A plugin's result as the edges echo it: its texts are device text (an error of 1,000 escape sequences
    would reach a terminal through the REST answer and the log), a text value at most ``width`` characters
    (the family's text width) and an error at most MAX_RESULT_TEXT (5 MB went into every answer and log line),
    a success carries no error, and a failure always says something and has a code (a plugin may return
    ``ok=False`` alone). An ``expired`` failure's error starts ``expired:``, as the hub's own expiry answers
    do, however the plugin worded it: an MQTT answer that carries no results (the first part of a set) says
    expiry by that prefix alone, and ``wmhub fleet`` recognises it so (hub.fleet.mirror)."""
    value = device_text(result.value, width) if isinstance(result.value, str) else result.value
    error = None if result.ok or not isinstance(result.error, str) else device_text(result.error, MAX_RESULT_TEXT)
    code = device_text(result.code, MAX_RESULT_TEXT) if isinstance(result.code, str) else None
    if not result.ok:
        held = "" if result.value is None else f"; it reports {preview(str(result.value))}"
        error = error or f"the device did not confirm the value{held}"
        if code is not None and code not in RESULT_CODES:
            note = f" (the plugin's code {preview(code)}, not one of wmhub's)"
            error = device_text(error, MAX_RESULT_TEXT - len(note)) + note
            code = None
        code = code or CommandError.code
        if code == CommandExpiredError.code and not error.startswith(EXPIRED_PREFIX):
            error = EXPIRED_PREFIX + " " + device_text(error, MAX_RESULT_TEXT - len(EXPIRED_PREFIX) - 1)
    if error == result.error and code == result.code and value == result.value:
        return result
    return result.model_copy(update={"value": value, "error": error, "code": code})


def _addresses_of(endpoint: Endpoint) -> frozenset[str]:
    """The addresses ``endpoint``'s host stands for: itself for an address (Endpoint.parse wrote it in its one
    spelling), else what its driver's lookup gave; none for a name not looked up here."""
    try:
        ipaddress.ip_address(endpoint.host)
    except ValueError:
        return names.answered(endpoint.host)
    return frozenset((endpoint.host,))
