"""The SSCv1 driver: one UDP socket per device, requests matched by ``osc/xid``, renewed subscriptions.

URL: ``sennheiser-ssc://host[:port][?lifetime=10&retry_ms=250&max_bytes=1400]``. Port 45 is only the
default: devices announce their real port in the DNS-SD SRV record, and discovery puts it in the URL.
State leaves are subscribed on change, meters periodically at ``meter_rate_ms``; both are renewed one
second before their lifetime ends and again at once after error 310 or a reboot (the renewal re-creates
what the device forgot). A device that ends them again right after each renewal is renewed at a paced,
growing interval instead (capped at one lifetime), and said once. Leaves whose subscription the device
refuses (an error other than 404/454 inside the subscribe tree) are read every ``REFUSED_POLL_S`` instead,
so their state stays live, and that is said once too.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from hub import names
from hub.drivers import DeviceSink, DriverSettings, Endpoint, UnsupportedDeviceError
from hub.model import (
    Command,
    CommandKind,
    CommandResult,
    CommandTimeoutError,
    NotSupportedError,
    RefusedError,
)
from wmhub_sennheiser import ssc1
from wmhub_sennheiser.capabilities import banded_capabilities
from wmhub_sennheiser.families import (
    DEVICE,
    EWDX,
    EWDX_BANDS,
    FAMILIES,
    ChannelMapper,
    SscFamily,
    Updates,
    check_band,
    family_for,
)
from wmhub_sennheiser.ssc1 import Address, ErrorKind, Message, SscDecodeError, SubscriptionParams
from wmhub_sennheiser.udp import (
    UdpDriver,
    applied_otherwise,
    float_option,
    int_option,
    meter_rate,
    resend_until,
    toggled,
)

SCHEME: Final = "sennheiser-ssc"
DEFAULT_PORT: Final = 45
VENDOR: Final = "sennheiser"
IDENTITY: Final = tuple(("device", "identity", leaf) for leaf in ("product", "serial", "version", "vendor"))
DEVICE_NAME: Final = ("device", "name")
XID_LIMIT: Final = 2**31
# Renewals after error 310 that came right after the previous renewal: the second waits this long, each
# further one twice as long (with jitter), up to one lifetime.
ENDED_AT_ONCE_FIRST_WAIT_S: Final = 0.25
# How often leaves whose subscription the device refuses are read instead.
REFUSED_POLL_S: Final = 1.0
# Errors inside the subscribe tree that are no refusal: 310 renews, 404/454 mark the leaf missing, 424 is a
# transmitter that is off, 413/414/450 ask for smaller requests.
NOT_REFUSALS: Final = frozenset(
    {ErrorKind.OK, ErrorKind.SUBSCRIPTION_ENDED, ErrorKind.MISSING, ErrorKind.NO_TRANSMITTER, ErrorKind.TOO_LARGE}
)


class SscUnsupportedDeviceError(UnsupportedDeviceError):
    """The device answers SSCv1 but is not a product family this plugin maps: shown with its product and asked
    again only every UNSUPPORTED_RETRY_S, like any device a plugin cannot monitor."""


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: UDP carries on, the liveness probe decides
        pass


@dataclass
class _Pending:
    answer: asyncio.Future[Message]
    paths: frozenset[Address]
    writes: Mapping[Address, Any]  # the values a set request writes (empty for a get)

    def answered_by(self, message: Message) -> bool:
        """For a device that does not reflect xid: the reply carries every address asked for, and for a set
        the written values (or an error). A subscription notification still holding the old value is no reply
        to a set whose datagram was lost: taken as one, it would report a refusal that never happened."""
        refused = {error.address for error in message.errors if error.kind is not ErrorKind.SUBSCRIPTION_ENDED}
        # a subscribe request is answered by its echo, which decoding keeps apart from the values
        echoed = {ssc1.SUBSCRIBE} if message.subscription_echo is not None else set()
        return (
            bool(self.paths)
            and self.paths <= message.addresses | echoed
            and all(
                path in refused or path in echoed or message.values.get(path) == value
                for path, value in self.writes.items()
            )
        )


class SscClient:
    """Requests and replies over one UDP socket; everything else the device sends goes to ``on_message``."""

    def __init__(
        self,
        host: str,
        port: int,
        retry_s: float,
        on_message: Callable[[Message], None],
        on_garbage: Callable[[str], None] | None = None,
    ) -> None:
        self.host, self.port, self.retry_s = host, port, retry_s
        self.on_message = on_message
        self.on_garbage = on_garbage
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[int, _Pending] = {}
        # bandit B311 waived: a request id to match replies, not a secret
        self._xids = itertools.count(random.randrange(1, XID_LIMIT // 2))  # nosec B311

    async def open(self, first: Mapping[str, Any], timeout: float) -> Message:
        """Connect the socket to the first of the host's addresses that answers the request ``first``, and
        return its answer (names.first_answering: each address has its share of ``timeout``)."""
        # resolved on the hub's resolver threads, not in the loop's shared pool (hub/names.py)
        addresses = await names.resolve(self.host, self.port, socket.SOCK_DGRAM, timeout)

        async def ask(address: names.Address, share: float) -> Message:
            await self._connect(address)
            return await self.request(first, share)

        async def give_up() -> None:
            self.close()

        return await names.first_answering(addresses, timeout, ask, give_up, TimeoutError)

    async def _connect(self, address: names.Address) -> None:
        self._transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Socket(self._received), remote_addr=(address.host, self.port), family=address.family
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        for pending in self._pending.values():
            pending.answer.cancel()

    def send(self, body: Mapping[str, Any], xid: int | None = None) -> None:
        if self._transport is not None:
            self._transport.sendto(ssc1.encode(body, xid))

    async def request(self, body: Mapping[str, Any], timeout: float) -> Message:
        """Send ``body`` with a fresh xid, re-sending it (same xid) until the reply arrives."""
        xid = next(self._xids) % XID_LIMIT
        answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        leaves = ssc1.flatten(dict(body))
        writes = {path: value for path, value in leaves.items() if value is not None}
        self._pending[xid] = _Pending(answer, frozenset(leaves), writes)
        try:
            return await resend_until(lambda: self.send(body, xid), answer, self.retry_s, timeout)
        except TimeoutError:
            asked = sorted(ssc1.address_text(path) for path in leaves)
            what = asked[0] + (f" (and {len(asked) - 1} more)" if len(asked) > 1 else "") if asked else "a request"
            raise TimeoutError(f"no answer to {what} within {timeout:g} s from {self.host}:{self.port}") from None
        finally:
            self._pending.pop(xid, None)

    def _received(self, data: bytes) -> None:
        try:
            message = ssc1.decode(data)
        except SscDecodeError as exc:  # dropped, as devices drop ours, but counted
            if self.on_garbage is not None:
                self.on_garbage(str(exc))
            return
        pending = (
            self._pending.get(message.xid)
            if message.xid is not None
            else self._unnumbered_match(message) or self._lone_error_match(message)
        )
        if pending is not None and not pending.answer.done():
            pending.answer.set_result(message)
        self.on_message(message)

    def _unnumbered_match(self, message: Message) -> _Pending | None:
        """Be liberal: a device that does not reflect xid still answers with the addresses asked for."""
        return next((pending for pending in self._pending.values() if pending.answered_by(message)), None)

    def _lone_error_match(self, message: Message) -> _Pending | None:
        """An error without xid that names no leaf asked for: a whole-message ``[400]``, or an error on a branch.

        Such a reply cannot be paired in general. Liberal acceptance of an unverified behaviour (whether a
        device that reflects no xid sends these): when exactly one outstanding request lies under what the
        error names, and it is a set, the error is its answer; otherwise it is left to the timeout.
        """
        if message.values or message.subscription_echo is not None or not message.errors:
            return None
        if any(
            error.in_subscription or error.kind in (ErrorKind.OK, ErrorKind.SUBSCRIPTION_ENDED)
            for error in message.errors
        ):
            return None
        concerned = [
            pending
            for pending in self._pending.values()
            if pending.paths
            and all(
                any(path[: len(error.address)] == error.address for error in message.errors) for path in pending.paths
            )
        ]
        return concerned[0] if len(concerned) == 1 and concerned[0].writes else None


@dataclass(frozen=True)
class PreparedCommand:
    command: Command
    path: Address
    device_value: Any
    hub_value: Any


class Ssc1Driver(UdpDriver):
    """One SSCv1 device (EW-DX, EM 6000, SpeechLine DW)."""

    def __init__(self, endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> None:
        super().__init__(endpoint, sink, settings)
        self.lifetime_s = self.url_option(float_option, "lifetime", ssc1.DEFAULT_LIFETIME_S, 1.0, 3600.0)
        self.max_bytes = self.url_option(int_option, "max_bytes", ssc1.DEFAULT_MAX_MESSAGE_BYTES, 128, 65_000)
        self.client = SscClient(endpoint.host, endpoint.port, self.retry_s, self._on_message, sink.protocol_error)
        self.family: SscFamily | None = None
        self.channel_count = 0
        self.missing: set[Address] = set()  # 404/454: this model lacks them; never asked again
        self.state: dict[int, dict[str, Any]] = {}  # the last fields reported, per channel (0 = device)
        self._mapper: ChannelMapper | None = None
        self._subscribed: set[Address] = set()
        self._renewed_at: float | None = None  # when renew() last asked the device, on the hub's clock
        self._forced_renewal_due = False  # a renewal after 310 is on its way
        self._ended_at_once = 0  # renewals in a row whose subscriptions the device ended right away
        self._said_ended_at_once = False
        self._refused: dict[Address, int] = {}  # leaves whose subscription the device refused -> its code
        self._said_refused = False
        self._polling_refused = False

    # --- lifecycle

    async def connect(self) -> None:
        self.check_options()
        reply = await self.client.open(ssc1.tree([*IDENTITY, DEVICE_NAME]), self.settings.io_timeout_s)
        product = reply.values.get(("device", "identity", "product"))
        if not isinstance(product, str):
            raise ConnectionError("the device did not answer /device/identity/product")
        family = family_for(product)
        if family is None:
            known = ", ".join(family.label for family in FAMILIES)
            serial = reply.values.get(IDENTITY[1])
            self.sink.identify(
                unique_id=serial if isinstance(serial, str) else None, family=None, model=product, channel_count=0
            )
            raise SscUnsupportedDeviceError(
                f"{self.endpoint.host}:{self.endpoint.port} is a {product!r}, not an SSCv1 receiver this plugin "
                f"knows ({known}): not monitored"
            )
        self.family, self._mapper = family, ChannelMapper(family)
        self.channel_count = family.channel_count(product)
        serial, version = reply.values.get(IDENTITY[1]), reply.values.get(IDENTITY[2])
        name = reply.values.get(DEVICE_NAME)
        self.sink.identify(
            unique_id=serial if isinstance(serial, str) and serial else None,
            family=family.label,
            model=product,
            channel_count=self.channel_count,
            firmware=version if isinstance(version, str) else None,
            name=name if isinstance(name, str) else None,
        )
        self._apply(self._mapper.values(reply.values))
        await self.get_many(family.state_addresses(self.channel_count))
        await self.renew()

    async def close(self) -> None:
        await self.cancel_tasks()
        if self._subscribed:
            # leave the device as we found it; a lost cancel just expires with its lifetime
            self.client.send(ssc1.cancel_body(sorted(self._subscribed)))
        self.client.close()

    # --- requests

    async def get_many(self, paths: Iterable[Address]) -> None:
        """Read leaves in messages below ``max_bytes``; halve a chunk the device finds too large."""
        wanted = [path for path in paths if path not in self.missing]
        for chunk in ssc1.split(wanted, lambda chunk: ssc1.encode(ssc1.tree(chunk), XID_LIMIT), self.max_bytes):
            await self._get_chunk(chunk)

    async def _get_chunk(self, chunk: Sequence[Address]) -> None:
        reply = await self.client.request(ssc1.tree(chunk), self.settings.io_timeout_s)
        if len(chunk) > 1 and any(error.kind is ErrorKind.TOO_LARGE for error in reply.errors):
            half = len(chunk) // 2
            await self._get_chunk(chunk[:half])
            await self._get_chunk(chunk[half:])

    def _subscription_sets(self) -> list[tuple[SubscriptionParams, list[Address]]]:
        assert self.family is not None
        on_change = SubscriptionParams(0, 0, self.lifetime_s)
        groups = [(on_change, self.family.state_addresses(self.channel_count))]
        if self.meter_ms > 0:
            meters = SubscriptionParams.periodic(self.meter_ms, self.lifetime_s)
            groups.append((meters, self.family.meter_addresses(self.channel_count)))
        sets = []
        for params, paths in groups:
            wanted = [path for path in paths if path not in self.missing]

            def encode(chunk: Sequence[Address], params: SubscriptionParams = params) -> bytes:
                return ssc1.encode(ssc1.subscribe_body([(params, chunk)]), XID_LIMIT)

            sets += [(params, chunk) for chunk in ssc1.split(wanted, encode, self.max_bytes)]
        return sets

    def renew_interval_s(self) -> float:
        return ssc1.renew_after_s(self.lifetime_s)

    async def renew(self) -> None:
        """Subscribe (again): the same request renews a live subscription and re-creates a forgotten one."""
        sets = self._subscription_sets()
        self._subscribed = {path for _, paths in sets for path in paths}
        self._renewed_at = self.sink.clock.monotonic()
        self._forced_renewal_due = False
        replies = await asyncio.gather(
            *(self.client.request(ssc1.subscribe_body([item]), self.settings.io_timeout_s) for item in sets),
            return_exceptions=True,
        )
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, TimeoutError):
                raise reply
        timeouts = [reply for reply in replies if isinstance(reply, TimeoutError)]
        if timeouts:
            raise timeouts[0]
        # every set was answered: a leaf refused before and not now is reported on change again
        still = {
            error.address
            for reply in replies
            if isinstance(reply, Message)
            for error in reply.errors
            if error.in_subscription and error.kind not in NOT_REFUSALS
        }
        for path in [path for path in self._refused if not any(path[: len(gone)] == gone for gone in still)]:
            del self._refused[path]

    async def probe(self) -> None:
        await self.client.request(ssc1.tree([DEVICE_NAME]), self.settings.io_timeout_s)

    # --- what the device sends

    def _on_message(self, message: Message) -> None:
        self.heard()
        for error in message.errors:
            if error.kind is ErrorKind.MISSING:
                self.missing.add(error.address)
            elif error.kind is ErrorKind.SUBSCRIPTION_ENDED and error.address in self._subscribed:
                self._subscription_ended()
            elif error.in_subscription and error.kind not in NOT_REFUSALS:
                self._subscription_refused(error)
        if self._mapper is None:
            return  # still identifying: connect() reads the identity reply itself
        self._apply(self._mapper.errors(message.errors))
        self._apply(self._mapper.values(message.values))

    def _subscription_ended(self) -> None:
        """Error 310: renew at once, unless the device ended what the last renewal asked for right away.

        Such a device would otherwise get a renewal for every 310 it sends, hundreds a second.
        """
        if self._forced_renewal_due:  # one 310 arrives per subscription set: one renewal answers them all
            return
        self._forced_renewal_due = True
        now = self.sink.clock.monotonic()
        right_after_renewal = self._renewed_at is not None and now - self._renewed_at < self.lifetime_s / 2
        self._ended_at_once = self._ended_at_once + 1 if right_after_renewal else 0
        if self._ended_at_once <= 1:
            self.renew_soon()
            return
        # bandit B311 waived: jitter spreads renewals, it is no secret
        jitter = random.uniform(0.5, 1.0)  # nosec B311
        wait = min(self.lifetime_s, ENDED_AT_ONCE_FIRST_WAIT_S * 2 ** (self._ended_at_once - 2)) * jitter
        if not self._said_ended_at_once:
            self._said_ended_at_once = True
            self.sink.log.warning(
                "the device ends the subscriptions again right after each renewal (error 310): "
                "renewing them at a growing interval, at most every %g s",
                self.lifetime_s,
            )
        self.spawn(self._renew_after(wait))

    async def _renew_after(self, seconds: float) -> None:
        await self.sink.clock.sleep(seconds)
        self.renew_soon()

    def _subscription_refused(self, error: ssc1.SscError) -> None:
        """The device refused to report these leaves on change: read them every REFUSED_POLL_S instead.

        A device may name the refused branch rather than each leaf: every subscribed leaf under it counts.
        """
        refused = [path for path in self._subscribed if path[: len(error.address)] == error.address]
        self._refused.update(dict.fromkeys(refused, error.code))
        if not refused:
            return
        if not self._said_refused:
            self._said_refused = True
            self.sink.log.warning(
                "the device refused the subscription to %s (error %d%s): its state is read every %g s instead",
                ssc1.address_text(error.address),
                error.code,
                f" {ssc1.ERROR_TEXT[error.code]}" if error.code in ssc1.ERROR_TEXT else "",
                REFUSED_POLL_S,
            )
        if not self._polling_refused:
            self._polling_refused = True
            self.spawn(self._poll_refused())

    async def _poll_refused(self) -> None:
        try:
            while self._refused:
                await self.sink.clock.sleep(REFUSED_POLL_S)
                try:
                    await self.get_many(sorted(self._refused))
                except TimeoutError:
                    continue  # the liveness probe decides whether the device is gone
        finally:
            self._polling_refused = False
        self.sink.log.info(
            "the device accepts the subscriptions again: no longer reading them every %g s", REFUSED_POLL_S
        )

    def _apply(self, updates: Updates) -> None:
        for channel, fields in updates.items():
            if not fields:
                continue
            known = self.state.setdefault(channel, {})
            returned = fields.get("tx_present") is True and known.get("tx_present") is False
            known.update(fields)
            if channel == DEVICE:
                self.sink.update_device(fields)
                if "rf_band" in fields and self.family is EWDX:  # the frequency range is its band's from now on
                    self.sink.update_capabilities(banded_capabilities(EWDX.label, self._band()))
            elif 1 <= channel <= self.channel_count:
                self.sink.update_channel(channel, fields)
                if returned and self.family is not None:
                    # the transmitter is back: read what it reports instead of waiting for a change
                    self.spawn(self.get_many(self.family.tx_addresses(channel)))

    # --- control

    def prepare(self, command: Command) -> PreparedCommand:
        """Validate a command against the family's limits; raises before anything is sent."""
        if self.family is None:
            raise NotSupportedError("the device is not identified yet")
        if command.kind is CommandKind.METER_RATE:
            return PreparedCommand(command, (), meter_rate(command.value), meter_rate(command.value))
        controls = self.family.device_controls if command.channel is None else self.family.controls
        control = controls.get(command.kind)
        if control is None:
            target = "the device" if command.channel is None else "a channel"
            raise NotSupportedError(f"{self.family.label} has no {command.kind.value} control for {target}")
        path = control.path(command.channel, self.missing)
        if path in self.missing:
            raise NotSupportedError(f"this {self.family.label} model has no {ssc1.address_text(path)}")
        current = self.state.get(command.channel or DEVICE, {}).get("muted")
        value = toggled(command.kind, command.value, current)
        encoded = control.encode(value)
        if command.kind is CommandKind.FREQUENCY and self.family is EWDX:
            encoded = check_band(encoded, self._band())  # the family's range spans every band variant
        return PreparedCommand(command, path, encoded, value)

    def _band(self) -> tuple[tuple[int, int], ...]:
        """The spans (kHz) of the EW-DX band the receiver reported (/device/frequency_code), if known."""
        return EWDX_BANDS.get(str(self.state.get(DEVICE, {}).get("rf_band")), ())

    async def execute(self, prepared: PreparedCommand) -> CommandResult:
        if prepared.command.kind is CommandKind.METER_RATE:
            self.meter_ms = prepared.device_value
            self.renew_soon()
            return CommandResult(ok=True, value=self.meter_ms)
        where = ssc1.address_text(prepared.path)
        timeout = self.settings.io_timeout_s
        try:
            reply = await self.client.request(ssc1.tree({prepared.path: prepared.device_value}), timeout)
        except TimeoutError:
            raise CommandTimeoutError(f"no reply to {where} within {timeout:g} s; it may have been done") from None
        # an error on the leaf, on a branch above it or on the whole message (an empty address) refuses the set;
        # 1xx/2xx codes (200 OK, 202 Adapted, 210 Partial success) are no errors: the value held decides
        refusals = [
            error
            for error in reply.errors
            if error.kind is not ErrorKind.OK and prepared.path[: len(error.address)] == error.address
        ]
        for error in sorted(refusals, key=lambda error: -len(error.address)):  # the most specific first
            if error.kind is ErrorKind.MISSING:
                raise NotSupportedError(_refusal_text(where, error))
            raise RefusedError(_refusal_text(where, error))
        if prepared.path in reply.values:
            applied = reply.values[prepared.path]
        else:
            # answered without the value (a bare 2xx, say): read back what the device holds
            try:
                read = await self.client.request(ssc1.tree([prepared.path]), timeout)
            except TimeoutError:
                raise CommandTimeoutError(
                    f"{where}: the device answered without the value, and reading it back got no reply within "
                    f"{timeout:g} s; it may have been done"
                ) from None
            applied = read.values.get(prepared.path)
        if applied != prepared.device_value:
            return applied_otherwise(where, self._hub_value(prepared.path, applied), prepared.hub_value)
        return CommandResult(ok=True, value=prepared.hub_value)

    def _hub_value(self, path: Address, value: Any) -> Any:
        """A leaf's device value in hub terms (kHz to MHz, say), as the channel shows it."""
        assert self.family is not None
        fields = next(iter(self.family.convert(path, value).values()), {})
        shown = [field for name, field in fields.items() if name != "tx_present" and not name.startswith("+")]
        return shown[0] if len(shown) == 1 else value


def _refusal_text(where: str, error: ssc1.SscError) -> str:
    """The device's code and text, and where it put the error if that is not the leaf set."""
    text = f"{error.code} {error.desc or ssc1.ERROR_TEXT.get(error.code, 'error')}"
    if error.address == ssc1.address(where):
        return f"{where}: {text}"
    if not error.address:
        return f"{where}: the device refused the whole message: {text}"
    return f"{where}: {text} (on {ssc1.address_text(error.address)})"
