"""The connection to one Shure receiver: detect the family, stream its state, carry out commands.

One asyncio protocol per receiver (TCP 2202, UDP 2202 for UHF-R) feeds a :class:`Framer`. A read of
nothing but meter samples is held, unparsed, until the hub wants the levels (``DeviceSink.defer_meters``):
then only each channel's newest sample is decoded. Other SAMPLE messages take a fast path straight to the
family's decoder; everything else is parsed, matched to outstanding requests and merged into the sink.
The hub's DriverSupervisor handles silence, backoff and reconnects; :meth:`ShureDriver.close` always
switches metering off first (QLX-D locks up otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn, cast

from hub.drivers import (
    DeviceSink,
    Driver,
    DriverSettings,
    Endpoint,
    PacedReader,
    UnsupportedDeviceError,
    command_deadline,
)
from hub.model import (
    METER_FIELDS,
    Command,
    CommandExpiredError,
    CommandResult,
    CommandTimeoutError,
    DeviceUnavailableError,
    RefusedError,
    SlotState,
)
from hub.names import Address, first_answering, resolve
from hub.text import small_number
from wmhub_shure.families import (
    METER_RATE_MIN_MS,
    PSM1000,
    QLXD,
    UHFR,
    ULXD,
    Family,
    SetRequest,
    build_set,
    channel_encryption,
    family_of_model,
    supported_families,
    tx_lock_of,
)
from wmhub_shure.protocol import ANGLE, ANGLE_CRLF, STAR, Framer, Framing, Report, encode, parse, sample_bodies

KEEPALIVE_MAX_S: Final = 10.0
UHFR_METER_UNIT_MS: Final = 30  # "* METER 1 ALL 003 *" is 3 x 30 ms
MAX_RAW_PARAMS: Final = 4096
# Held meter reads merged at once past this many, should the hub not ask for them: bounds what a receiver
# metering faster than the hub looks can make it keep.
MAX_HELD_READS: Final = 32
# How long a SET answered with a value other than the one asked for waits for its exact echo before it is
# settled with the value the receiver holds. Right after connecting, the answer to GET 0 ALL streams the old
# values: a SET sent meanwhile sees its parameter's old value go by before the receiver gets to the SET and
# echoes the new one, a few hundred milliseconds at most. A receiver that stored something else (a name cut
# to its length, a clamped gain) echoes that at once and sends nothing more: it should not cost io_timeout_s.
OTHER_VALUE_GRACE_S: Final = 1.0
# ERRs a resynchronising GET may take before the connection is given up: each is a late ERR of a request
# already dropped, or the receiver refusing the question itself; a few cannot be told from the second
SYNC_REFUSALS_MAX: Final = 3


class NoAnswerError(ConnectionError):
    """The device accepted the connection but answered nothing."""


class SkippedError(ConnectionError):
    """The device answered a later request but not this one: it never will (replies come in order)."""


class OtherValueError(RefusedError):
    """The receiver answered a SET with a value other than the one asked for, and kept it (see _Pending)."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


@dataclass(eq=False)  # each request is itself: the queue removes entries by identity
class _Pending:
    """A request waiting for its REP (or for an ERR, which names no parameter: see below).

    Every request is tracked, awaited or not, so that replies and errors pair with requests in order. A
    request whose waiter gave up (its future is done) stays queued until ``expires``: a late reply still
    pairs with it instead of being charged to a newer request.

    A SET whose ``accept`` takes only the value asked for may see a REP of its parameter with another value:
    an old value still streaming from GET 0 ALL, or the receiver's answer when it stored something else. The
    last such REP is kept in ``other``; unless the exact echo follows within OTHER_VALUE_GRACE_S, the SET is
    settled with that value (OtherValueError) and leaves the queue. Having had a REP, it is taken for answered:
    a later ERR is not charged to it, nor does a later request's reply skip it.

    ``< REP ERR >`` names no parameter, so it is charged to the oldest request that has had no REP at all (the
    oldest of all if every one has). That is right only while every request gets an answer: one the receiver
    never answers would take the ERR meant for the next one, and a late answer of one dropped from the queue
    would be taken for a newer request's. So after a request goes unanswered, no command is sent until the
    driver has resynchronised (ShureDriver._resync).
    """

    channel: int | None
    param: str
    index: int | None
    future: asyncio.Future[Report]
    expires: float
    text: str
    seq: int = 0  # the order it was sent in, on this connection
    accept: Callable[[Report], bool] = field(default=lambda report: True)
    settles_on_other: bool = False  # a REP of another value settles it after OTHER_VALUE_GRACE_S (apply's SETs)
    other: Report | None = None
    grace: asyncio.TimerHandle | None = None

    def concerns(self, report: Report) -> bool:
        """The report is about what this request asked for (whatever its value)."""
        if self.param == "ALL":
            # GET ALL has no REP of its own: the first report of its burst (receiver-level or its channel) answers it
            return self.channel in (0, None) or report.channel in (None, self.channel)
        if report.param != self.param:
            return False
        if self.channel != report.channel and not (self.channel == 0 and report.channel is not None):
            return False
        return self.index is None or self.index == report.index

    def matches(self, report: Report) -> bool:
        return self.concerns(report) and self.accept(report)


class _Link(asyncio.Protocol, asyncio.DatagramProtocol):
    """Hands bytes to the driver; one class for the TCP stream and the UHF-R datagrams."""

    def __init__(self, driver: ShureDriver) -> None:
        self._driver = driver
        # the transport calls the reader itself: one Python frame fewer on each of thousands of reads a second
        self.data_received = driver._reader  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._driver._reader.attach(transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._driver._on_data(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" for UDP: the silence timeout decides, not a single lost datagram
        self._driver.sink.log.debug("datagram error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._driver._on_lost(exc)


class ShureDriver(Driver):
    """One Shure receiver over TCP (``shure://``) or, for UHF-R, UDP (``shure-uhfr://``)."""

    def __init__(self, endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings, udp: bool = False) -> None:
        super().__init__(endpoint, sink, settings)
        self.udp = udp
        self.family: Family | None = None
        self.model: str | None = None
        self.channel_count = 0
        self.raw: dict[tuple[int | None, str, int | None], str] = {}
        self.malformed = 0
        self.reads = 0  # reads of device data so far (socket reads or datagrams)
        # a receiver's reads are a few hundred bytes; a flood's fill the socket's buffer and are paced (UHF-R's
        # datagrams are small, and a datagram socket has no reading to pause)
        self._reader = PacedReader(self._on_data, boundary=b">", on_throttled=self._say_throttled)
        self._framer = Framer(STAR if udp else ANGLE)
        self._dropped_reported = 0
        self._framing = STAR if udp else ANGLE
        self._transport: asyncio.BaseTransport | None = None
        self._lost: asyncio.Future[None] | None = None
        self._pending: deque[_Pending] = deque()
        self._sample: Callable[[list[bytes]], dict[str, Any]] | None = None
        self._tx_model: dict[int, str | None] = {}
        self._bars: dict[int, int | None] = {}
        self._gain: dict[int, int | None] = {}
        self._present: dict[int, bool | None] = {}  # a family with arrival_params: the presence last reported
        self._warnings: dict[int, set[str]] = {}
        self._rssi: dict[int, dict[int, int]] = {}
        self._parts: dict[tuple[int, str], dict[str, Any]] = {}  # shares of a field two parameters fill
        self._encryption_mode: str | None = None
        self._key_mismatch: dict[int, bool] = {}  # per channel, once its encryption status was reported
        self._slots: dict[int, dict[int, dict[str, Any]]] = {}  # channel -> slot -> SlotState fields so far
        self._slots_changed: set[int] = set()  # channels whose slots this read changed
        self._keepalive: asyncio.Task[None] | None = None
        self._meter_channels = [0]  # where METER_RATE went: channel 0 (all), or each channel that took it
        self._hold_samples = False  # the family's samples carry meters only, so they can wait for the hub
        self._held_reads: list[bytes] = []
        self._held = False  # the hub was asked to merge the held reads
        # resynchronising after an unanswered request (see _resync): requests are numbered as sent; any sent up
        # to _lost_upto may still be answered late, none sent up to _synced_upto can be
        self._sent = 0
        self._lost_upto = 0
        self._synced_upto = 0
        self._lost_what = ""
        self._sync: asyncio.Task[None] | None = None
        self._given_up: str | None = None  # why the driver closed the connection itself

    # lifecycle

    async def connect(self) -> None:
        # resolved on the hub's resolver threads, not by create_connection in the loop's shared pool (hub/names.py)
        kind = socket.SOCK_DGRAM if self.udp else socket.SOCK_STREAM
        addresses = await resolve(self.endpoint.host, self.endpoint.port, kind, self.settings.io_timeout_s)
        if self.udp:
            family, model, channels, device = await self._reach_answering(addresses)
        else:
            for address in addresses[:-1]:
                with contextlib.suppress(OSError):  # the next address, as create_connection(host) would
                    await self._open(address)
                    break
            else:
                await self._open(addresses[-1])
            family, model, channels, device = await self._detect()
        self._use_family(family, model, channels)
        self.sink.identify(
            unique_id=None,
            family=family.key,
            model=device.pop("model", model),
            channel_count=channels,
            firmware=device.pop("firmware", None),
            name=device.pop("name", None),
        )
        await self._query_all()
        await self._start_metering()

    async def _open(self, address: Address) -> None:
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        port = self.endpoint.port
        # asyncio.timeout rather than wait_for throughout: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as the awaited call finishes, and the hub could then never stop this driver
        try:
            async with asyncio.timeout(self.settings.io_timeout_s):
                if self.udp:
                    self._transport, _ = await loop.create_datagram_endpoint(
                        lambda: _Link(self), remote_addr=(address.host, port), family=address.family
                    )
                else:
                    self._transport, _ = await loop.create_connection(
                        lambda: _Link(self), address.host, port, family=address.family
                    )
        except TimeoutError:
            raise ConnectionError(
                f"no connection to {self._where(address)} within {self.settings.io_timeout_s:g} s"
            ) from None

    async def _reach_answering(self, addresses: list[Address]) -> tuple[Family, str, int, dict[str, Any]]:
        """Detect the UHF-R receiver at the first of ``addresses`` that answers (hub.names.first_answering:
        each address has its share of the connect's time)."""

        async def detect(address: Address, timeout_s: float) -> tuple[Family, str, int, dict[str, Any]]:
            await self._open(address)
            return await self._detect(timeout_s)

        async def give_up() -> None:
            transport, self._transport = self._transport, None
            if transport is not None and self._lost is not None:
                transport.close()
                await self._lost  # connection_lost has run: it failed this link's requests, not the next one's
            self._synced_upto = self._sent  # no answer to them can come over the next link

        return await first_answering(addresses, self.settings.io_timeout_s, detect, give_up, NoAnswerError)

    @property
    def where(self) -> str:
        """The receiver's address, for messages that must say which receiver they are about."""
        return f"{self.endpoint.host}:{self.endpoint.port}"

    def _where(self, address: Address) -> str:
        """The receiver's name and the address it resolved to, for messages about connecting to that address."""
        if address.host == self.endpoint.host:
            return self.where
        return f"{self.endpoint.host} ({address.host}):{self.endpoint.port}"

    async def run(self) -> None:
        assert self._lost is not None
        self._keepalive = asyncio.ensure_future(self._keep_alive())
        try:
            await self._lost
        finally:
            self._keepalive.cancel()
            # a keep-alive that found the transport closing ended with an error: collect it, so asyncio
            # does not log it as never retrieved (the lost connection is what run reports)
            await asyncio.gather(self._keepalive, return_exceptions=True)
        raise ConnectionError(self._given_up or f"connection closed by {self.where}")

    async def close(self) -> None:
        try:
            if self._keepalive is not None:
                self._keepalive.cancel()
            if self._sync is not None:
                self._sync.cancel()
            transport = self._transport
            if transport is not None and not transport.is_closing():
                self._send_meter_rate(0)
                transport.close()  # a TCP transport flushes what is buffered before it closes
            self._fail_pending(ConnectionError("connection closed"))
            self._held_reads.clear()
        except Exception as exc:  # close never raises: the supervisor must always get to reconnect
            self.sink.log.debug("close: %s", exc)

    def _on_lost(self, exc: Exception | None) -> None:
        self._reader.close()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        self._held_reads.clear()  # levels of a receiver that is gone are nobody's news
        self._fail_pending(ConnectionError(str(exc) if exc else f"connection to {self.where} closed"))

    # family detection (the user gives only an address)

    async def _detect(self, timeout_s: float | None = None) -> tuple[Family, str, int, dict[str, Any]]:
        """(family, model, channel count, receiver-level fields) from what the device answers (UHF-R: within
        ``timeout_s``, io_timeout_s unless given).

        Questions go out together and an optional one the device stays silent on costs no extra wait once a
        later one is answered (replies come in order), so a receiver that ignores MODEL is still quick.
        """
        if self.udp:
            model_reply, second = await self._ask_all([(None, "MODEL"), (2, "CHAN_NAME")], timeout_s)
            if model_reply is not None and model_reply.value.strip():
                return self._known_model(model_reply, {})
            # UHF-R without a MODEL answer (no public source shows one): count the channels that answer
            channels = 2 if second is not None else 1
            return UHFR, "UR4D" if channels == 2 else "UR4S", channels, {}
        # DEVICE_ID last: every family answers it, so an optional question before it that the device ignores
        # is settled by that answer instead of by the timeout
        receiver_params = ("FW_VER", "DEVICE_ID")
        first: list[tuple[int | None, str]] = [(None, "MODEL"), *((None, param) for param in receiver_params)]
        try:
            model_reply, *replies = await self._ask_all(first)
        except NoAnswerError as silent:
            # Shure's PSM1000 command strings end every message with CRLF; whether a P10T ignores one without
            # is unverified, and no public client sends CRLF to the other families: asked again with it, within
            # half the timeout so that the whole connect stays inside the hub's bound on it (two timeouts)
            self._framing = ANGLE_CRLF
            try:
                model_reply, *replies = await self._ask_all(first, self.settings.io_timeout_s / 2)
            except NoAnswerError:
                raise silent from None
        receiver = {param: reply.value for param, reply in zip(receiver_params, replies, strict=True) if reply}
        if model_reply is not None and model_reply.value.strip():
            return self._known_model(model_reply, receiver)
        # ULX-D, QLX-D and PSM1000 report no MODEL: tell them apart by what they answer
        psm, mute, fourth, second = await self._ask_all(
            [(1, "AUDIO_IN_LVL_L"), (1, "AUDIO_MUTE"), (4, "CHAN_NAME"), (2, "CHAN_NAME")]
        )
        if psm is not None:
            family, model, channels = PSM1000, "P10T", 2
        elif mute is None:
            family, model, channels = QLXD, "QLXD4", 1
        elif fourth is not None:
            family, model, channels = ULXD, "ULXD4Q", 4
        elif second is not None:
            family, model, channels = ULXD, "ULXD4D", 2
        else:
            family, model, channels = ULXD, "ULXD4", 1
        others = [param for param in family.device_params if param not in receiver_params]
        if others:  # a family naming itself differently (P10T: DEVICE_NAME); optional, like the rest
            with contextlib.suppress(NoAnswerError):
                replies = await self._ask_all([(None, param) for param in others])
                receiver.update({param: reply.value for param, reply in zip(others, replies, strict=True) if reply})
        return family, model, channels, self._receiver_fields(family, receiver)

    def _known_model(self, reply: Report, receiver: dict[str, str]) -> tuple[Family, str, int, dict[str, Any]]:
        found = family_of_model(reply.value)
        if found is None:
            self._unsupported(reply.value.strip(), receiver)
        family, _, channels = found
        fields = self._receiver_fields(family, receiver)
        fields["model"] = reply.value.strip()
        return family, reply.value.strip(), channels, fields

    def _unsupported(self, model: str, receiver: dict[str, str]) -> NoReturn:
        """A Shure device that is no receiver we know (MXW, a microphone array, a newer model): shown with its
        model string and no channels, never taken for the nearest family."""
        self.sink.identify(
            unique_id=None,
            family=None,
            model=model,
            channel_count=0,
            firmware=receiver.get("FW_VER", "").strip() or None,
            name=receiver.get("DEVICE_ID", "").strip() or None,
        )
        raise UnsupportedDeviceError(
            f"Shure {model} at {self.where} is not a receiver this hub can monitor "
            f"(supported: {', '.join(supported_families())})"
        )

    @staticmethod
    def _receiver_fields(family: Family, receiver: dict[str, str]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for param, value in receiver.items():
            spec = family.device_params.get(param)
            if spec is not None:
                fields[spec.field] = spec.codec.decode(value)
        return fields

    async def _ask_all(
        self, questions: list[tuple[int | None, str]], timeout_s: float | None = None
    ) -> list[Report | None]:
        """GET each parameter: its REP, or None when the device refused it or stayed silent on it.

        Raise NoAnswerError when the device said nothing at all to any of them."""
        timeout_s = self.settings.io_timeout_s if timeout_s is None else timeout_s
        futures = [self._track(channel, "GET", param) for channel, param in questions]
        await asyncio.wait(futures, timeout=timeout_s)
        answers: list[Report | None] = []
        heard = False
        lost: BaseException | None = None
        for future in futures:
            if not future.done():
                future.cancel()  # abandoned: a late answer still pairs with it (see _Pending)
                self._mark_lost("a question")
            error = None if future.cancelled() else future.exception()
            answered = not future.cancelled() and error is None
            answers.append(future.result() if answered else None)
            # a refusal, or a later question answered, shows the device is listening
            heard = heard or answered or isinstance(error, RefusedError | SkippedError)
            if error is not None and not isinstance(error, RefusedError | SkippedError):
                lost = error  # the connection closed under the questions: that, not silence, is why
        if not heard and lost is not None:
            raise lost
        if not heard:
            asked = ", ".join(f"GET {'' if channel is None else f'{channel} '}{param}" for channel, param in questions)
            hint = "" if self.udp else " (SLX-D needs Controller Access set to Allow)"
            raise NoAnswerError(f"no answer to {asked} within {timeout_s:g} s from {self.where}{hint}")
        return answers

    def _use_family(self, family: Family, model: str, channels: int) -> None:
        self.family, self.model, self.channel_count = family, model, channels
        self._framing = family.framing
        self._sample = family.sample
        # UHF-R's samples also carry the battery and the transmitter's presence: those cannot wait
        self._hold_samples = (
            family.sample is not None and family.framing is ANGLE and family.sample_fields <= METER_FIELDS
        )

    async def _query_all(self) -> None:
        family = self.family
        assert family is not None
        if family in (UHFR, PSM1000):
            # micboard queries these one parameter at a time; GET ALL is not known to work on them
            self._ask_each_parameter(family)
            return
        everything = self._track(0, "GET", "ALL")
        await asyncio.wait([everything], timeout=self.settings.io_timeout_s)
        if _refused(everything):
            # SLX-D+ firmware 2.0.38.9 refuses GET 0 ALL and dumps one channel per GET n ALL (CO SLX-D+ notes)
            each = [self._track(channel, "GET", "ALL") for channel in range(1, self.channel_count + 1)]
            await asyncio.wait(each, timeout=self.settings.io_timeout_s)
            if all(_refused(future) for future in each):
                # firmware that has no ALL at all (unverified, but as UHF-R): its state one parameter at a time
                self.sink.log.warning(
                    "%s %s refused GET ALL for itself and for each channel: asking for each parameter instead",
                    self.model,
                    self.where,
                )
                self._ask_each_parameter(family)
        if family.network_query:
            param, *values = family.network_query
            self._track(None, "GET", param, *values)

    def _another_receiver(self, family: Family, model: str) -> bool:
        """A MODEL report of a family or channel count other than the one detected: another receiver answers
        at this address now (a swap behind a switch). Its fields would not fit the family's: the connection
        is closed, so that it is detected anew."""
        found = family_of_model(model)
        if found is not None and found[0] is family and found[2] == self.channel_count:
            return False
        self.sink.log.warning(
            "%s reports model %r, not the %s detected: detecting it again", self.where, model.strip()[:40], self.model
        )
        if self._transport is not None:
            self._transport.close()
        return True

    def _ask_each_parameter(self, family: Family) -> None:
        fields_seen: set[str] = set()
        params = []
        for name, spec in family.channel_params.items():
            if spec.field not in fields_seen:  # one spelling per field: the other would get an ERR
                fields_seen.add(spec.field)
                params.append(name)
        for channel in range(1, self.channel_count + 1):
            for param in params:
                self._track(channel, "GET", param)

    async def _start_metering(self) -> None:
        family = self.family
        if family is None or family.sample is None:
            return
        rate = max(METER_RATE_MIN_MS, self.settings.meter_rate_ms) if self.settings.meter_rate_ms else 0
        if self.udp:
            self._send_meter_rate(rate)
            return
        refused = await self._set_meter_rate(rate, [0])
        if not refused:
            return
        if refused == [None]:
            self.sink.log.warning(
                "%s %s did not confirm METER_RATE within %g s; meters show only if it sends them anyway",
                self.model,
                self.where,
                self.settings.io_timeout_s,
            )
            return
        # micboard meters each channel (SET 1 METER_RATE 00100): some receivers refuse channel 0
        channels = list(range(1, self.channel_count + 1))
        failed = await self._set_meter_rate(rate, channels)
        self._meter_channels = [channel for channel in channels if channel not in failed]
        if failed:
            which = "any channel" if len(failed) == len(channels) else "channel " + ", ".join(map(str, failed))
            self.sink.log.warning(
                "%s %s refused METER_RATE for all channels and for %s: monitoring %s without meters",
                self.model,
                self.where,
                which,
                "it" if len(failed) == len(channels) else "those",
            )

    async def _set_meter_rate(
        self, rate_ms: int, channels: list[int], timeout_s: float | None = None
    ) -> list[int | None]:
        """SET METER_RATE on ``channels``: the channels that refused it, None for each that stayed silent."""
        value = f"{rate_ms:05d}"

        def confirms(report: Report) -> bool:
            return small_number(report.value) == rate_ms

        futures = {channel: self._track(channel, "SET", "METER_RATE", value, accept=confirms) for channel in channels}
        await asyncio.wait(futures.values(), timeout=self.settings.io_timeout_s if timeout_s is None else timeout_s)
        failed: list[int | None] = []
        for channel, future in futures.items():
            if not future.done():
                future.cancel()
                self._mark_lost(f"SET {channel} METER_RATE {value}")
                failed.append(None)
            elif future.cancelled() or future.exception() is not None:
                failed.append(channel)
        if None in failed:
            self._start_resync()
        return failed

    def _send_meter_rate(self, rate_ms: int) -> None:
        if self.udp:
            value = f"{max(1, rate_ms // UHFR_METER_UNIT_MS):03d}" if rate_ms else "STOP"
            for channel in range(1, (self.channel_count or 2) + 1):
                self._send(encode(STAR, "METER", "ALL", value, channel=channel))
        else:
            for channel in self._meter_channels:
                self._send(encode(self._framing, "SET", "METER_RATE", f"{rate_ms:05d}", channel=channel))

    async def _keep_alive(self) -> None:
        # CO's heartbeat: an answered GET proves the device is there when nothing else arrives (metering off,
        # a family without SAMPLE). Data since the last beat proves it already: no GET then, which at ten
        # samples a second spares the hub and the receiver one request per receiver every few seconds.
        interval = min(KEEPALIVE_MAX_S, max(0.2, self.settings.offline_after_s / 3))
        param = self.family.keepalive_param if self.family is not None else "METER_RATE"
        reads = self.reads
        while True:
            await self.sink.clock.sleep(interval)
            self._expire_pending()
            if self.reads == reads:
                self._track(1, "GET", param)
            reads = self.reads

    # requests and replies

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise DeviceUnavailableError(f"not connected to {self.where}")
        if self.udp:
            cast(asyncio.DatagramTransport, transport).sendto(data)
        else:
            cast(asyncio.WriteTransport, transport).write(data)

    def _track(
        self,
        channel: int | None,
        verb: str,
        param: str,
        *values: str,
        index: int | None = None,
        accept: Callable[[Report], bool] | None = None,
        settles_on_other: bool = False,
    ) -> asyncio.Future[Report]:
        """Send one request and queue what pairs its reply with it; every request goes through here.

        ``settles_on_other``: a REP of another value than ``accept`` takes settles the request with
        OtherValueError once OTHER_VALUE_GRACE_S passes without the exact echo (see _Pending)."""
        self._expire_pending()
        future: asyncio.Future[Report] = asyncio.get_running_loop().create_future()
        arguments = values if index is None else (str(index), *values)
        data = encode(self._framing, verb, param, *arguments, channel=channel)
        # kept past its own timeout, so that a late reply is not taken for the answer to a newer request
        expires = time.monotonic() + 2 * self.settings.io_timeout_s
        text = data.decode("ascii", "replace").strip()
        self._sent += 1
        pending = _Pending(
            channel, param, index, future, expires, text, seq=self._sent, settles_on_other=settles_on_other
        )
        if accept is not None:
            pending.accept = accept
        self._pending.append(pending)
        self._send(data)
        return future

    def _expire_pending(self) -> None:
        now = time.monotonic()
        while self._pending and self._pending[0].expires < now:
            expired = self._pending.popleft()
            if expired.other is None:  # never answered at all: an answer may still come, and pair with nothing
                self._mark_lost(expired.text, expired.seq)
            if not expired.future.done():
                expired.future.cancel()

    def _fail_pending(self, exc: Exception) -> None:
        while self._pending:
            self._settle(self._pending.popleft(), exc)

    @staticmethod
    def _settle(pending: _Pending, exc: Exception) -> None:
        if pending.grace is not None:
            pending.grace.cancel()
        future = pending.future
        if not future.done():
            future.set_exception(exc)
            future.exception()  # nobody may be waiting (keep-alive); do not warn about it

    def _resolve(self, report: Report) -> None:
        pending = self._pending
        if report.is_error:
            # the oldest request that has had no REP at all: one answered with another value is not waiting
            # for an ERR (see _Pending); a request never answered takes it all the same
            entry = next((entry for entry in pending if entry.other is None), pending[0] if pending else None)
            if entry is not None:
                pending.remove(entry)
                self._settle(entry, RefusedError(f"{self.model or 'the receiver'} {self.where} refused {entry.text}"))
            return
        for position, entry in enumerate(pending):
            if not entry.concerns(report):
                continue
            if not entry.accept(report):
                if entry.settles_on_other:
                    self._hold_other(entry, report)
                continue
            # replies come in order: what was asked before this and is still unanswered never will be (one
            # answered with another value waits out its grace instead)
            earlier = [pending.popleft() for _ in range(position)]
            pending.extendleft(reversed([skipped for skipped in earlier if skipped.other is not None]))
            for skipped in earlier:
                if skipped.other is None:
                    self._settle(skipped, SkippedError(f"{self.where} did not answer {skipped.text}"))
            pending.remove(entry)
            if entry.grace is not None:
                entry.grace.cancel()
            if not entry.future.done():
                entry.future.set_result(report)
            return

    def _hold_other(self, entry: _Pending, report: Report) -> None:
        """A REP of another value for a SET: keep it, and settle the SET with it unless its echo follows."""
        entry.other = report
        if entry.grace is None and not entry.future.done():
            entry.grace = asyncio.get_running_loop().call_later(OTHER_VALUE_GRACE_S, self._settle_other, entry)

    def _settle_other(self, entry: _Pending) -> None:
        with contextlib.suppress(ValueError):  # already settled otherwise (connection lost)
            self._pending.remove(entry)
        entry.grace = None
        report = entry.other
        assert report is not None
        message = f"{self.model or 'the receiver'} {self.where} answered {entry.text} with {report.value!r}"
        self._settle(entry, OtherValueError(message, report))

    # incoming data

    def _say_throttled(self) -> None:
        self.sink.log.warning(
            "%s sends more than the hub can read (over %d%% of its time): read more slowly from now on",
            self.where,
            round(self._reader.share * 100),
        )

    def _on_data(self, data: bytes) -> None:
        self.reads += 1
        sink = self.sink
        samples = self._framer.samples_only(data) if self._hold_samples else 0
        if samples:
            held = self._held_reads
            held.append(data)
            sink.heard(samples)
            if len(held) >= MAX_HELD_READS:
                self._decode_held()
            elif not self._held:
                self._held = True
                sink.defer_meters(self._merge_held)
            return
        if self._held_reads:  # older than this read: merged first, or they would overwrite its newer levels
            self._decode_held()
        sample = self._sample
        channels = self.channel_count
        bodies = self._framer.feed(data)
        for body in bodies:
            tokens = body.split()  # wasted only on the rare report: nearly every message is a SAMPLE
            if tokens and tokens[0] == b"SAMPLE":
                if sample is None:
                    continue
                samples += 1
                try:
                    channel = int(tokens[1])
                    fields = sample(tokens)
                except (ValueError, IndexError):
                    self._malformed(body)
                    continue
                if 0 < channel <= channels:
                    sink.update_channel(channel, fields)
                continue
            report = parse(body)
            if report is None:
                self._malformed(body)
                continue
            self._resolve(report)
            if self.family is not None and not report.is_error and report.verb in ("REP", "REPORT"):
                self._merge(self.family, report)
        if self._slots_changed:
            self._send_slots()
        if bodies:  # bytes outside any message are no sign of life: a receiver gone wrong may send nothing else
            sink.heard(samples)
        framer = self._framer
        if framer.dropped_bytes != self._dropped_reported:
            sink.protocol_error(f"{framer.dropped_bytes - self._dropped_reported} bytes outside any message")
            self._dropped_reported = framer.dropped_bytes

    def _merge_held(self) -> None:
        self._held = False
        self._decode_held()

    def _decode_held(self) -> None:
        """Merge each channel's newest held sample; the older ones were superseded before anyone looked.

        A superseded sample is never parsed, so a malformed one counts as a protocol error only if no
        well-formed one came after it."""
        reads, self._held_reads = self._held_reads, []
        sample, channels, sink = self._sample, self.channel_count, self.sink
        if sample is None:
            return
        merged: set[int] = set()
        for data in reversed(reads):
            for body in reversed(sample_bodies(data)):
                tokens = body.split()
                try:
                    channel = int(tokens[1])
                    if channel in merged or not 0 < channel <= channels:
                        continue
                    fields = sample(tokens)
                except (ValueError, IndexError):
                    self._malformed(body)
                    continue
                merged.add(channel)
                sink.update_channel(channel, fields)
            if len(merged) == channels:
                return

    def _malformed(self, body: bytes) -> None:
        self.malformed += 1
        self.sink.protocol_error(f"unparsable message {body[:60]!r}")

    def _merge(self, family: Family, report: Report) -> None:
        channel = report.channel
        if channel is None and report.param == "MODEL" and self._another_receiver(family, report.value):
            return
        if channel is None:
            spec = family.device_params.get(report.param) or family.device_state.get(report.param)
            if spec is None:
                self._keep_raw((None, report.param, report.index), report.value)
                return
            device_fields = spec.decode(report.value)
            self.sink.update_device(device_fields)
            if "encryption_mode" in device_fields:
                value = self._encryption_mode = device_fields["encryption_mode"]
                for index, mismatch in self._key_mismatch.items():
                    self.sink.update_channel(index, {"encryption": channel_encryption(value, mismatch)})
            return
        if not 0 < channel <= self.channel_count:
            return
        slot_spec = family.slot_params.get(report.param)
        if slot_spec is not None and report.index is not None and 0 < report.index <= family.slots:
            slots = self._slots.setdefault(channel, {})
            slots.setdefault(report.index, {})[slot_spec.field] = slot_spec.codec.decode(report.value)
            self._slots_changed.add(channel)
            return
        fields: dict[str, Any] = {}
        spec = family.channel_params.get(report.param)
        if spec is not None and spec.split is not None:
            fields.update(spec.split(report.value))
        elif spec is not None:
            value = spec.codec.decode(report.value)
            if report.index is not None and spec.field == "rf_dbm":
                # per-antenna RSSI: the channel's level is its strongest antenna
                antennas = self._rssi.setdefault(channel, {})
                if value is None:
                    antennas.pop(report.index, None)
                else:
                    antennas[report.index] = value
                value = max(antennas.values()) if antennas else None
            elif spec.part is not None:
                parts = self._parts.setdefault((channel, spec.field), {})
                parts[spec.part] = value
                value = tx_lock_of(parts.get("power"), parts.get("menu"))  # tx_locked: the one field in shares
            fields[spec.field] = value
            self._track_transmitter(family, channel, spec.field, value, fields)
        rules = family.warnings_for(report.param)
        if rules:
            active = self._warnings.setdefault(channel, set())
            for rule in rules:
                if report.value.strip().upper() in rule.raised_by:
                    active.add(rule.warning)
                else:
                    active.discard(rule.warning)
            fields["warnings"] = sorted(active)
            if report.param == family.encryption_param:
                mismatch = self._key_mismatch[channel] = "encryption" in active
                fields["encryption"] = channel_encryption(self._encryption_mode, mismatch)
        if fields:
            self.sink.update_channel(channel, fields)
        else:
            self._keep_raw((channel, report.param, report.index), report.value)

    def _send_slots(self) -> None:
        """Each channel's slots once per read: the receiver reports every value of every slot apart (dozens
        in one answer to GET ALL), and the whole list for each of them cost a starting hub a quarter of its
        time at a site of Axient receivers."""
        for channel in sorted(self._slots_changed):
            slots = self._slots[channel]
            self.sink.update_channel(
                channel, {"tx_slots": [SlotState(slot=index, **slots[index]) for index in sorted(slots)]}
            )
        self._slots_changed.clear()

    def _keep_raw(self, key: tuple[int | None, str, int | None], value: str) -> None:
        # unknown parameters are kept, not dropped; a device inventing endless names cannot grow this
        if key in self.raw or len(self.raw) < MAX_RAW_PARAMS:
            self.raw[key] = value

    def _track_transmitter(self, family: Family, channel: int, name: str, value: Any, fields: dict[str, Any]) -> None:
        if name == "tx_present" and family.arrival_params:
            if value is True and self._present.get(channel) is False:
                for param in family.arrival_params:
                    self._track(channel, "GET", param)
            self._present[channel] = value
        elif name == "gain_db":
            self._gain[channel] = value
        elif name in ("tx_model", "battery_bars") and family.battery_param is not None:
            (self._tx_model if name == "tx_model" else self._bars)[channel] = value
            present = self._bars.get(channel) is not None
            if family.tx_model_param is not None:
                present = present and self._tx_model.get(channel) is not None
            fields["tx_present"] = present

    # control

    def check(self, command: Command) -> SetRequest:
        """Validate a command against this receiver's family; raise before anything is sent."""
        if self.family is None:
            raise DeviceUnavailableError("the receiver has not been identified yet")
        # the hub routes a channel command only to a channel the device has
        channel = command.channel
        return build_set(self.family, command, self._gain.get(channel) if channel else None)

    async def apply(self, command: Command) -> CommandResult:
        request = self.check(command)
        # one budget for the resynchronisation and the command, as before for the command alone: the hub
        # bounds a driver's apply by its command timeout
        deadline = asyncio.get_running_loop().time() + self.settings.io_timeout_s
        await self._resynchronised(deadline, command_deadline())
        if request.param == "METER_RATE" and self._meter_channels != [0]:
            return await self._meter_rate_per_channel(request.expected, deadline)

        def accept(report: Report) -> bool:
            return request.expected is None or request.confirm(report) == request.expected

        future = self._track(
            request.channel,
            "SET",
            request.param,
            *request.values,
            index=request.index,
            accept=accept,
            settles_on_other=request.expected is not None,
        )
        try:
            async with asyncio.timeout_at(deadline):
                report = await future
        except (TimeoutError, SkippedError) as exc:
            # the receiver may have taken it all the same: ask, so the hub shows what it holds either way
            with contextlib.suppress(DeviceUnavailableError):
                self._track(request.channel, "GET", request.param, index=request.index)
            if isinstance(exc, TimeoutError):  # skipped: a later answer came, so no answer of it is to come
                sent = next((entry.text for entry in self._pending if entry.future is future), request.param)
                self._mark_lost(sent)
                self._start_resync()  # now, so that the next command finds it done
            raise CommandTimeoutError(
                f"{self.model} {self.where} did not confirm {request.param} within {self.settings.io_timeout_s:g} s"
            ) from None
        except OtherValueError as exc:
            # the receiver took the SET but keeps another value (a name cut short, a gain clamped): say which
            held = request.confirm(exc.report)
            scope = "" if request.channel in (None, 0) else f" channel {request.channel}"
            return CommandResult(
                ok=False,
                value=held,
                code="refused",
                error=(
                    f"{self.model} {self.where}{scope} holds {request.param} {_shown(held)}, "
                    f"not the {_shown(request.expected)} asked for"
                ),
            )
        return CommandResult(ok=True, value=request.confirm(report))

    async def _meter_rate_per_channel(self, rate_ms: int, deadline: float) -> CommandResult:
        """A meter rate for a receiver that refused channel 0 at connect: set on each channel, as then."""
        channels = list(range(1, self.channel_count + 1))
        left_s = max(0.0, deadline - asyncio.get_running_loop().time())
        failed = await self._set_meter_rate(rate_ms, channels, left_s)
        self._meter_channels = [channel for channel in channels if channel not in failed]
        if None in failed:
            raise CommandTimeoutError(
                f"{self.model} {self.where} did not confirm METER_RATE within {self.settings.io_timeout_s:g} s"
            )
        if failed:
            refused = ", ".join(str(channel) for channel in failed)
            raise RefusedError(f"{self.model} {self.where} refused METER_RATE on channel {refused}")
        return CommandResult(ok=True, value=rate_ms)

    # resynchronising after an unanswered request

    def _mark_lost(self, what: str, seq: int | None = None) -> None:
        """A request (``seq``; every one sent so far when not known) went unanswered: its answer may still come."""
        upto = self._sent if seq is None else seq
        if upto > self._lost_upto:
            self._lost_upto, self._lost_what = upto, what

    def _start_resync(self, deadline: float | None = None) -> None:
        """Resynchronise (unless under way), within io_timeout_s or by ``deadline`` (the loop's clock)."""
        if self._lost_upto > self._synced_upto and (self._sync is None or self._sync.done()):
            limit = asyncio.get_running_loop().time() + self.settings.io_timeout_s
            self._sync = asyncio.ensure_future(self._resync(limit if deadline is None else min(limit, deadline)))

    async def _resynchronised(self, deadline: float, send_by: float | None = None) -> None:
        """Return once no answer to an earlier request can reach a request sent now; raise (nothing sent) when
        that is not so by ``deadline`` (the loop's clock) or the connection was given up for it, or when the
        command's sender stopped waiting meanwhile (``send_by``, the hub's clock: hub.drivers.command_deadline)."""
        loop = asyncio.get_running_loop()
        clock = self.sink.clock
        while self._lost_upto > self._synced_upto:
            transport = self._transport
            if self._given_up is not None or transport is None or transport.is_closing():
                raise DeviceUnavailableError(f"not sent: {self._given_up or f'not connected to {self.where}'}")
            if loop.time() >= deadline:
                raise CommandTimeoutError(
                    f"not sent: {self.model} {self.where} left {self._lost_what} unanswered and did not answer "
                    f"the question asked after it within {self.settings.io_timeout_s:g} s"
                )
            self._start_resync(deadline)
            sync = self._sync
            assert sync is not None
            # no timeout of its own: the resynchronisation has one, and began no later than this command; wait
            # rather than await, so that a command cancelled by the hub leaves it running, and one cancelled by
            # close() does not cancel the command (the connection's state above says what happened). The
            # sender's deadline ends the wait, not the resynchronisation: a short one costs no new connection.
            await asyncio.wait({sync}, timeout=None if send_by is None else max(0.0, send_by - clock.now()))
            if send_by is not None and clock.now() >= send_by:
                raise CommandExpiredError(
                    f"expired: not carried out, its deadline passed while it waited for {self.model} {self.where} "
                    f"to answer the question asked after {self._lost_what}"
                )
            if self._lost_upto <= self._synced_upto and loop.time() >= deadline:
                raise CommandTimeoutError(
                    f"not sent: {self.model} {self.where} answered the question asked after {self._lost_what} "
                    f"only after this command's {self.settings.io_timeout_s:g} s"
                )

    async def _resync(self, deadline: float) -> None:
        """Make sure that every answer still to come to the requests sent so far has come, before a command.

        Answers pair with requests only by order (an ERR names nothing; a REP of a GET looks like one to a SET
        or one pushed by the receiver). After a request goes unanswered the hub cannot know whether its answer
        is lost or still on its way, so a command sent then could be charged with it, or give its own answer
        to the lost request. So a GET goes out whose REP no request in the queue could take, and nothing else
        is sent until it is answered: replies come in order, so by then every earlier request has had its
        answer or never will (``_resolve`` settles those left as skipped), and an ERR that comes before it is
        one of theirs. Everything received meanwhile is read and merged as usual (samples, REPs pushed by the
        receiver); only commands wait.

        Reconnecting instead would also be safe (a new connection carries no answer of the old one), but it
        costs detection, the GET ALL dump and the meters' restart, and shows the receiver offline for a
        moment, for what is usually a single lost message. It is the fallback for when the GET does not settle
        it: no answer within io_timeout_s either (the receiver is stalled: how many late answers are still to
        come is unknown), or only ERRs to a question it always answers. Assumed, unverified: replies come in
        the order asked (every public client relies on it too), and no other client makes the receiver push a
        REP of the question's parameter (METER_RATE, CHAN_NAME for PSM1000 and UHF-R) at that very moment.
        """
        refusals = 0
        while True:
            question = self._sync_question()
            if question is None:
                self._give_up("has requests out that a check could be taken for")
                return
            channel, param = question
            try:
                future = self._track(channel, "GET", param)
                upto = self._sent
                async with asyncio.timeout_at(deadline):
                    await future
            except RefusedError:
                refusals += 1
                if refusals < SYNC_REFUSALS_MAX:
                    continue  # a late ERR of a request no longer queued: ask again
                self._give_up(f"answered GET {channel} {param} (always answered) with ERR {refusals} times")
                return
            except SkippedError:
                pass  # a later request answered: settles this one and all before it as well
            except TimeoutError:
                self._give_up(f"answered nothing to GET {channel} {param} within {self.settings.io_timeout_s:g} s")
                return
            except (ConnectionError, DeviceUnavailableError):
                return  # the connection is gone anyway: the next one carries no answer of this one
            self._synced_upto = max(self._synced_upto, upto)
            return

    def _sync_question(self) -> tuple[int, str] | None:
        """A GET the receiver always answers whose REP no queued request would take: the keep-alive's on some
        channel, else a channel's name (a SET 0 METER_RATE still queued would take every channel's rate);
        None while a GET ALL is queued, which any report answers."""
        keepalive = self.family.keepalive_param if self.family is not None else "METER_RATE"
        channels = range(1, max(1, self.channel_count) + 1)
        for param in dict.fromkeys((keepalive, "CHAN_NAME")):
            for channel in channels:
                answer = Report("REP", channel, param, None, "")
                if not any(entry.concerns(answer) for entry in self._pending):
                    return channel, param
        return None

    def _give_up(self, why: str) -> None:
        """Close the connection after a failed resynchronisation; the supervisor connects again (its backoff)."""
        self._given_up = f"{self.model} {self.where} left {self._lost_what} unanswered, then {why}: connecting again"
        self.sink.log.warning("%s", self._given_up)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            with contextlib.suppress(DeviceUnavailableError):
                self._send_meter_rate(0)  # as close() does: QLX-D locks up if a metered client just goes
            transport.close()


def tcp_driver(endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> ShureDriver:
    return ShureDriver(endpoint, sink, settings)


def udp_driver(endpoint: Endpoint, sink: DeviceSink, settings: DriverSettings) -> ShureDriver:
    return ShureDriver(endpoint, sink, settings, udp=True)


async def probe(host: str, port: int, timeout_s: float) -> tuple[str, str | None] | None:
    """Ask a TCP 2202 endpoint what it is: (model, device name), or None if it is no Shure receiver we support
    (or takes no connection).

    Other Shure devices answer on 2202 too (MXA910, P300, ANI4IN): a MODEL no family claims is refused, and
    a device without MODEL (ULX-D, QLX-D, PSM1000) must at least report a channel frequency, which only RF
    equipment has. A device silent on every question is asked once more with CRLF after each (as the
    driver's detection does: the PSM1000's command strings end messages with it); one that holds the
    connection and still says nothing raises NoAnswerError: it may be a receiver that is still starting.
    """
    started = time.monotonic()
    silent = False
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(timeout_s / 2):
            reader, writer = await asyncio.open_connection(host, port)
        try:
            # both rounds within timeout_s, the hub's bound on the whole probe; a receiver answers in milliseconds
            replies = await _probe_replies(reader, writer, ANGLE, started + timeout_s / 2)
            if replies is None and not reader.at_eof():
                replies = await _probe_replies(reader, writer, ANGLE_CRLF, started + timeout_s * 0.9)
                silent = replies is None and not reader.at_eof()
            replies = replies or {}
            model = replies.get("MODEL", "").strip()
            if model:
                return (model, replies.get("DEVICE_ID")) if family_of_model(model) is not None else None
            if "FREQUENCY" in replies:
                return "ULX-D, QLX-D or PSM1000", replies.get("DEVICE_ID")
        finally:
            writer.close()
    if silent:
        raise NoAnswerError(f"{host}:{port} took the connection and answered nothing")
    return None


async def _probe_replies(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, framing: Framing, deadline: float
) -> dict[str, str] | None:
    """The probe's questions asked in ``framing``: the values answered (refusals left out), None when nothing
    at all was answered by ``deadline`` (time.monotonic) or before the device closed the connection."""
    questions = (("MODEL", None), ("DEVICE_ID", None), ("FREQUENCY", 1))
    writer.write(b"".join(encode(framing, "GET", param, channel=channel) for param, channel in questions))
    framer = Framer()
    replies: dict[str, str] = {}
    answered = 0
    while answered < len(questions):
        try:
            async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                data = await reader.read(4096)
        except TimeoutError:
            break  # silent on one question: decide from the others
        if not data:
            break
        for body in framer.feed(data):
            report = parse(body)
            if report is None or report.verb not in ("REP", "REPORT"):
                continue
            answered += 1
            if not report.is_error and report.channel in (None, 1):
                replies.setdefault(report.param, report.value)
    return replies if answered else None


def _shown(value: Any) -> str:
    """A value in a message: text quoted (a name's spaces must show), numbers and switches as they are."""
    return f"'{value}'" if isinstance(value, str) else "unknown" if value is None else str(value)


def _refused(future: asyncio.Future[Report]) -> bool:
    return future.done() and not future.cancelled() and isinstance(future.exception(), RefusedError)
