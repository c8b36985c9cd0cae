"""A protocol-level Shure receiver: answers GET/SET like the device, streams SAMPLE, injects faults.

The simulator keeps its state in the hub model's units (dBm, dBFS, MHz, dB, bars) and encodes every
reply with its own tables (:mod:`wmhub_shure.simulator.wire`, checked against the conformance corpus,
never the driver's), so a test can compare :attr:`ShureSimulator.state` with the hub's normalised state
field by field. Replies, REP echoes to every client, ``< REP ERR >`` for unknown
parameters and the padding of brace fields follow the protocol reference.
"""

from __future__ import annotations

import asyncio
import random
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, cast

from hub.model import METER_FIELDS
from wmhub_shure.protocol import Framer, Report, brace, parse
from wmhub_shure.simulator.wire import (
    AXIENT,
    CHARGER,
    GAIN_OFFSET,
    MXW,
    PSM1000,
    QLXD,
    SLXD,
    SLXD_PLUS,
    UHFR,
    ULXD,
    WireFamily,
    WireParam,
    antenna_marks,
)

NOISE_FLOOR_DBM: Final = -108
SILENCE_DBFS: Final = -48  # a multiple of 6, so UHF-R's LED bitmap carries it exactly


@dataclass(frozen=True)
class ModelProfile:
    """A simulated model: its family, the MODEL string it reports and its channel count."""

    key: str
    family: WireFamily
    model: str
    channels: int


MODELS: Final = {
    profile.key: profile
    for profile in (
        ModelProfile("ulxd4", ULXD, "ULXD4", 1),
        ModelProfile("ulxd4d", ULXD, "ULXD4D", 2),
        ModelProfile("ulxd4q", ULXD, "ULXD4Q", 4),
        ModelProfile("qlxd4", QLXD, "QLXD4", 1),
        ModelProfile("ad4d", AXIENT, "AD4D-A", 2),
        ModelProfile("ad4q", AXIENT, "AD4Q-A", 4),
        ModelProfile("slxd4", SLXD, "SLXD4", 1),
        ModelProfile("slxd4d", SLXD, "SLXD4D", 2),
        ModelProfile("slxd4+", SLXD_PLUS, "SLXD4+", 1),
        ModelProfile("slxd4d+", SLXD_PLUS, "SLXD4D+", 2),
        ModelProfile("slxd4q+", SLXD_PLUS, "SLXD4Q+", 4),
        ModelProfile("slxd4qdan+", SLXD_PLUS, "SLXD4QDAN+", 4),
        ModelProfile("ur4s", UHFR, "UR4S", 1),
        ModelProfile("ur4d", UHFR, "UR4D", 2),
        ModelProfile("p10t", PSM1000, "P10T", 2),
        ModelProfile("mxwapt2", MXW, "MXWAPT2", 2),
        ModelProfile("mxwapt4", MXW, "MXWAPT4", 4),
        ModelProfile("mxwapt8", MXW, "MXWAPT8", 8),
        ModelProfile("mxwani4", MXW, "MXWANI4", 4),
        ModelProfile("mxwani8", MXW, "MXWANI8", 8),
        ModelProfile("sbrc", CHARGER, "SBRC", 8),
        ModelProfile("sbc220", CHARGER, "SBC220", 8),
        ModelProfile("sbc240", CHARGER, "SBC240", 8),
    )
}

TX_MODELS: Final = {
    "ulxd": "ULXD2",
    "qlxd": "QLXD2",
    "axient": "AD2",
    "slxd": "SLXD2",
    "slxd_plus": "SLXD2+",
    "mxw": "MXW2",
}
FIRMWARE: Final = {
    "ulxd": "2.3.27",
    "qlxd": "2.2.11",
    "axient": "1.1.43.0",
    "slxd": "2.0.15.2",
    "slxd_plus": "2.0.38.9",
    "mxw": "4.4.6",
    "charger": "1.4.53",
}


@dataclass
class ClientRecord:
    """How one client connection ended: ``metering_left_on`` when its last METER_RATE request was not 0."""

    peer: str
    closed_by_client: bool
    metering_left_on: bool


@dataclass
class SimChannel:
    """One channel's state in hub-model units, plus the transmitter it remembers while switched off."""

    index: int
    values: dict[str, Any]
    warnings: set[str] = field(default_factory=set)
    meter_rate_ms: int = 0
    next_sample: float = 0.0
    tx_memory: dict[str, Any] = field(default_factory=dict)
    tx_on: bool = True


class _Peer(ABC):
    """One connected client (a TCP connection, or a UDP source address) and its ordered output."""

    def __init__(self, sim: ShureSimulator, name: str) -> None:
        self.sim = sim
        self.name = name
        self.framer = Framer(sim.family.framing)
        self.queue: asyncio.Queue[bytes] | None = None
        self.requested_meter_rate = 0  # what this client last asked for, answered or not
        self.sender: asyncio.Task[None] | None = None
        self.unended = b""  # with lines_only: what came after the last CRLF
        self.held: list[bytes] = []  # answers kept back while the simulator is holding, in order

    @abstractmethod
    def write_now(self, data: bytes) -> None:
        """Hand ``data`` to the transport at once."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the client as a crashing receiver would."""

    def send(self, data: bytes) -> None:
        """Write; answers wait ``answer_delay_s``; split writes queue behind earlier output."""
        sim = self.sim
        if sim.answering and sim.unanswered_peer is self:
            return
        if sim.answering and sim.holding:
            self.held.append(data)
            return
        if sim.answering and sim.answer_delay_s:
            asyncio.get_running_loop().call_later(sim.answer_delay_s, self._write, data)
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self.queue is None and not self.sim.split_writes:
            self.write_now(data)
            return
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.sender = asyncio.ensure_future(self._send_queued())
        self.queue.put_nowait(data)

    async def _send_queued(self) -> None:
        assert self.queue is not None
        while True:
            data = await self.queue.get()
            if self.sim.split_writes and len(data) > 1:
                # bandit B311 waived: where a simulated TCP write is split, not a secret
                cuts = sorted(random.sample(range(1, len(data)), min(3, len(data) - 1)))  # nosec B311
                for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
                    self.write_now(data[start:end])
                    await asyncio.sleep(0.002)  # separate TCP segments, so the reader sees the split
            else:
                self.write_now(data)

    def stop(self) -> None:
        if self.sender is not None:
            self.sender.cancel()

    def received(self, data: bytes) -> None:
        if self.sim.lines_only:
            ended, _, self.unended = (self.unended + data).rpartition(b"\r\n")
            data = ended
        for body in self.framer.feed(data):
            report = parse(body)
            if report is not None and report.verb in ("SET", "METER") and report.param in ("METER_RATE", "ALL"):
                self.requested_meter_rate = 0 if report.value.upper() in ("STOP", "0", "00000") else 1
            if not self.sim.silent:
                self.sim.answering = True
                try:
                    self.sim.handle(self, report)
                finally:
                    self.sim.answering = False


class _Capture(_Peer):
    """A client without a socket: collects what the simulator answers it (see ShureSimulator.answer)."""

    def __init__(self, sim: ShureSimulator) -> None:
        super().__init__(sim, "capture")
        self.captured: list[bytes] = []

    def write_now(self, data: bytes) -> None:
        self.captured.append(data)

    def abort(self) -> None:
        self.captured.clear()


class _TcpPeer(_Peer, asyncio.Protocol):
    def __init__(self, sim: ShureSimulator) -> None:
        super().__init__(sim, "?")
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a cast, not an isinstance check: uvloop's TCP transports do not subclass asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.name = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.sim.peers.append(self)

    def data_received(self, data: bytes) -> None:
        self.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop()
        self.sim.forget(self, closed_by_client=True)

    def write_now(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        self.stop()
        self.sim.forget(self, closed_by_client=False)
        if self.transport is not None:
            self.transport.abort()


class _UdpPeer(_Peer):
    def __init__(self, sim: ShureSimulator, transport: asyncio.DatagramTransport, address: Any) -> None:
        super().__init__(sim, f"{address[0]}:{address[1]}")
        self.transport = transport
        self.address = address

    def write_now(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.sendto(data, self.address)

    def abort(self) -> None:
        self.stop()
        self.sim.forget(self, closed_by_client=False)


class _UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, sim: ShureSimulator) -> None:
        self.sim = sim
        self.transport: asyncio.DatagramTransport | None = None
        self.by_address: dict[Any, _UdpPeer] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        peer = self.by_address.get(addr)
        if peer is None or peer not in self.sim.peers:
            peer = self.by_address[addr] = _UdpPeer(self.sim, self.transport, addr)
            self.sim.peers.append(peer)
        peer.received(data)


# slot settings a SET may change, and the values each takes (CO src/actions.js: ADX slot RF output and power)
_SLOT_SETTINGS: Final = {"SLOT_RF_OUTPUT": ("RF_ON", "RF_MUTE"), "SLOT_RF_POWER_MODE": ("LOW", "NORMAL", "HIGH")}


def _unique_params(family: WireFamily, spellings: dict[str, str]) -> list[tuple[str, WireParam]]:
    """The parameters a receiver reports, in table order, each in the spelling this simulator uses."""
    return [(spellings.get(name, name), param) for name, param in family.channel_params.items() if not param.alternate]


class ShureSimulator:
    """One simulated receiver: ``async with ShureSimulator(family="ad4q") as sim: sim.port ...``.

    ``family`` is a model key of :data:`MODELS` (``ulxd4q``, ``ad4d``, ``slxd4q+``, ``ur4d``, ...).
    ``spellings`` picks alternative parameter names (SLX-D: ``{"GROUP_CHANNEL": "GROUP_CHAN",
    "TX_MODEL": "TX_TYPE"}``). Faults: :meth:`drop_clients`, :attr:`silent`, :meth:`send_garbage`,
    :attr:`split_writes`, :attr:`answer_delay_s`, :attr:`refused_params`, :attr:`unconfirmed_once`,
    :attr:`holding` (with :meth:`release`).
    """

    def __init__(
        self,
        family: str = "ad4q",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        spellings: dict[str, str] | None = None,
        quadversity: bool = False,
        seed: int | None = None,
    ) -> None:
        if family not in MODELS:
            raise ValueError(f"unknown model {family!r}; known: {', '.join(MODELS)}")
        self.profile = MODELS[family]
        self.family = self.profile.family
        self.host = host
        self.port = port
        self.spellings = dict(spellings or {})
        self.quadversity = quadversity and self.family is AXIENT
        self.peers: list[_Peer] = []
        self.closed_clients: list[ClientRecord] = []
        self.silent = False
        self.split_writes = False
        # a device that acts on a message only once its line ends (CRLF), as Shure's PSM1000 command strings
        # describe every message: what comes before waits for the CRLF
        self.lines_only = False
        self.answer_delay_s = 0.0
        self.answering = False  # set while a request is handled: its replies and echoes are answers
        self.refused_params: set[str] = set()  # answered with ERR, like firmware that lacks them
        # the next SET of each parameter here is carried out without a word to the client that sent it (other
        # clients still see the change): a receiver that acts on a command and never confirms it
        self.unconfirmed_once: set[str] = set()
        self.unanswered_peer: _Peer | None = None  # while such a SET is handled: the client left unanswered
        # a receiver stalled on its requests: answers wait, in order, until release(); samples and changes
        # made at the front panel still go out (a client that disconnects loses what was held for it)
        self.holding = False
        self.received: deque[str] = deque(maxlen=1000)
        self._random = random.Random(seed)  # nosec B311 # simulated values, seeded for reproducible tests
        self._server: asyncio.Server | None = None
        self._udp: _UdpEndpoint | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: asyncio.Future[None] | None = None
        self.device: dict[str, Any] = {
            "name": f"RX{self._random.randrange(100, 999)}",
            "firmware": FIRMWARE.get(self.family.key, "1.0.0"),
            "model": self.profile.model,
            "family": self.family.key,
            "rf_band": "G55",
            "encryption_mode": "off",
            "front_panel_locked": False,
            "dante_name": f"{self.profile.model.removesuffix('+')}-{self._random.randrange(10, 99)}",
            "ip_address": "127.0.0.1",
            "mac_address": f"00:0E:DD:45:60:{self._random.randrange(16, 255):02X}",
        }
        self.channels = {index: self._initial_channel(index) for index in range(1, self.profile.channels + 1)}
        self.raw: dict[tuple[int | None, str, int | None], str] = self._initial_raw()

    # lifecycle

    async def start(self) -> ShureSimulator:
        loop = asyncio.get_running_loop()
        if self.family.udp:
            transport, endpoint = await loop.create_datagram_endpoint(
                lambda: _UdpEndpoint(self), local_addr=(self.host, self.port)
            )
            self._udp = endpoint
            self.port = transport.get_extra_info("sockname")[1]
        else:
            self._server = await loop.create_server(lambda: _TcpPeer(self), self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
        if self.family.meters:
            self._tasks.append(asyncio.ensure_future(self._meter_loop()))
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for peer in list(self.peers):
            peer.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()

    async def __aenter__(self) -> ShureSimulator:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        scheme = "shure-uhfr" if self.family.udp else "shure"
        return f"{scheme}://{self.host}:{self.port}"

    # state in hub-model terms

    @property
    def state(self) -> dict[str, Any]:
        """``{"device": {...}, "channels": {index: {field: value}}}`` for every field the family has."""
        fields = self.family.fields
        channels = {}
        for index, channel in self.channels.items():
            values = {name: value for name, value in channel.values.items() if name in fields}
            if "rf_antennas" in fields:
                values["rf_antennas"] = self._antenna_levels(channel)
            if "audio_peak_dbfs" in fields:
                values["audio_peak_dbfs"] = self._audio_peak(channel)
            for rule in self.family.warnings:
                if not rule.clear_value and rule.warning in channel.warnings:
                    values[self.family.channel_params[rule.param].field] = None  # a marker hides the value
            if "warnings" in fields:
                values["warnings"] = sorted(channel.warnings)
            if "tx_present" in fields:
                values["tx_present"] = self._tx_present(channel)
            if "encryption" in fields:
                keyed = self.device["encryption_mode"] != "off"
                values["encryption"] = "mismatch" if "encryption" in channel.warnings else "on" if keyed else "off"
            channels[index] = values
        device = {name: value for name, value in self.device.items() if name in self._device_fields()}
        return {"device": device, "channels": channels}

    def _antenna_levels(self, channel: SimChannel) -> dict[str, int]:
        """RF per antenna: the first antenna carries the channel's level, each further one 2 dB less."""
        rf = channel.values.get("rf_dbm", NOISE_FLOOR_DBM)
        count = 4 if self.quadversity else 2
        return {"ABCD"[i]: rf - 2 * i for i in range(count)}

    @staticmethod
    def _audio_peak(channel: SimChannel) -> int:
        """Peaks sit 6 dB above the RMS level, up to full scale."""
        return int(min(0, channel.values.get("audio_dbfs", SILENCE_DBFS) + 6))

    def _device_fields(self) -> set[str]:
        names = {param.field for param in self.family.device_params.values()} | {"family"}
        if self.family.network:
            names |= {"ip_address", "mac_address"}
        if "MODEL" not in self.family.device_params:
            names.add("model")  # the driver names the model from its probe
        return names

    def _tx_present(self, channel: SimChannel) -> bool:
        if self.family.battery_param is None:  # MXW reports presence itself (TX_AVAILABLE)
            return bool(channel.values.get("tx_present"))
        bars_known = channel.values.get("battery_bars") is not None
        if self.family.tx_model_param is None:
            return bars_known
        return bars_known and channel.values.get("tx_model") is not None

    @property
    def metering_on(self) -> bool:
        return any(channel.meter_rate_ms for channel in self.channels.values())

    def _initial_channel(self, index: int) -> SimChannel:
        family = self.family
        fields = family.fields
        values: dict[str, Any] = {
            "name": f"CH{index} {self._random.choice(['Vox', 'Gtr', 'Key', 'Host'])}"[: family.name_max],
            "frequency_mhz": 470.0 + index * 0.125 + self._random.randrange(0, 400) * 0.025,
            "muted": False,
            "gain_db": self._random.randrange(-6, 12),
            "tx_present": True,
            "battery_time_to_full_min": None,
            "tx_model": TX_MODELS.get(family.key),
            "tx_muted": False,
            "battery_bars": 4,
            "battery_percent": 80,
            "battery_runtime_min": 300 - 20 * index,
            "battery_type": "LION",
            "rf_dbm": -60 - index,
            "rf_quality_percent": 100,
            "antenna": "A",
            "audio_dbfs": -24 - 6 * (index % 3),
            "audio_peak": False,
            "group_channel": f"1,{index:02d}" if family.key in ("ulxd", "qlxd", "psm1000") else f"1,{index}",
            "tx_id": f"TX{index}",
            "tx_offset_db": 0,
            "tx_power": "10mW" if family is AXIENT else "50mW" if family is PSM1000 else "normal",
            "tx_locked": "none",
            "tx_talk_switch": False,
            "battery_health_percent": 96,
            "battery_cycles": 40 + index,
            "battery_temp_c": 27,
            "frequency2_mhz": None,
        }
        values["frequency_mhz"] = round(values["frequency_mhz"], 3)
        if family is CHARGER:  # odd bays charge, even bays sit full
            charging = index % 2 == 1
            values.update(
                battery_charge_state="normal" if charging else "full",
                battery_percent=60 + index if charging else 100,
                battery_bars=3 if charging else 5,
                battery_time_to_full_min=40 - index if charging else None,
                battery_temp_c=31,
            )
        if family is UHFR:
            values["name"] = f"Mic{index}"  # bare-token names: no spaces on the wire
        return SimChannel(index, {name: value for name, value in values.items() if name in fields})

    def _initial_raw(self) -> dict[tuple[int | None, str, int | None], str]:
        raw: dict[tuple[int | None, str, int | None], str] = {}
        key = self.family.key
        if key == "axient":
            raw[(None, "QUADVERSITY_MODE", None)] = "ON" if self.quadversity else "OFF"
            raw[(None, "TRANSMISSION_MODE", None)] = "STANDARD"
        for index in self.channels:
            if key == "uhfr":
                raw[(index, "GROUP_CHAN", None)] = "1,01"
            if key == "axient":
                raw[(index, "FD_MODE", None)] = "OFF"
                values = self.channels[index].values
                for slot in range(1, self.family.slots + 1):
                    # slot 1 holds the channel's own transmitter, linked over ShowLink; the rest are empty
                    linked = slot == 1 and values.get("tx_model") is not None
                    bars, percent = values.get("battery_bars"), values.get("battery_percent")
                    raw[(index, "SLOT_STATUS", slot)] = "LINKED.ACTIVE" if linked else "EMPTY"
                    raw[(index, "SLOT_TX_MODEL", slot)] = str(values["tx_model"]) if linked else "UNKNOWN"
                    raw[(index, "SLOT_BATT_BARS", slot)] = f"{bars:03d}" if linked and bars is not None else "255"
                    raw[(index, "SLOT_BATT_CHARGE_PERCENT", slot)] = (
                        f"{percent:03d}" if linked and percent is not None else "255"
                    )
                    raw[(index, "SLOT_RF_POWER_MODE", slot)] = "NORMAL" if linked else "UNKNOWN"
                    raw[(index, "SLOT_RF_OUTPUT", slot)] = "RF_ON"
                    raw[(index, "SLOT_BATT_MINS", slot)] = "65535"
            if key == "slxd_plus":
                tx = self.channels[index].values.get("tx_model")
                raw[(index, "LINK_STATUS", 1)] = "online " if tx else "offline"
                raw[(index, "SLOT_TX_MODEL", 1)] = brace(tx or "", 10)
                raw[(index, "LINK_STATUS", 2)] = "offline"
                raw[(index, "SLOT_TX_MODEL", 2)] = brace("", 10)
            if key == "psm1000":
                raw[(index, "TX_OFFSET", None)] = "000"
                raw[(index, "AUDIO_IN_LVL_L", None)] = "0023728"
                raw[(index, "AUDIO_IN_LVL_R", None)] = "0023728"
        return raw

    # wire encoding

    def _verb(self) -> str:
        return self.family.reply_verb

    def _message(self, body: str) -> bytes:
        framing = self.family.framing
        return b"%s %s %s" % (framing.start, body.encode("ascii", "replace"), framing.end)

    def _channel_lines(self, channel: SimChannel) -> list[str]:
        verb, index = self._verb(), channel.index
        lines = []
        for name, param in _unique_params(self.family, self.spellings):
            if name == "RSSI" and self.family.rssi_antennas:
                antennas = 4 if self.quadversity else self.family.rssi_antennas
                for antenna in range(1, antennas + 1):
                    lines.append(f"{verb} {index} RSSI {antenna} {self._encode(channel, name, param)}")
                continue
            lines.append(f"{verb} {index} {name} {self._encode(channel, name, param)}")
        for rule in self.family.warnings:
            if rule.clear_value:  # runtime markers ride on the runtime parameter itself
                value = next(iter(rule.raised_by)) if rule.warning in channel.warnings else rule.clear_value
                lines.append(f"{verb} {index} {rule.param} {value}")
        if not self.family.udp and self.family.meter_rate:
            lines.append(f"{verb} {index} METER_RATE {channel.meter_rate_ms:05d}")
        for (raw_channel, name, slot), value in self.raw.items():
            if raw_channel == index:
                lines.append(f"{verb} {index} {name}{'' if slot is None else f' {slot}'} {value}")
        return lines

    def _encode(self, channel: SimChannel, name: str, param: WireParam) -> str:
        for rule in self.family.warnings_for(name):
            if rule.warning in channel.warnings and not rule.clear_value:
                return next(iter(rule.raised_by))
        value = channel.values.get(param.field)
        if name == "CHAN_NAME" and self.family.name_width:
            return brace(value or "", self.family.name_width)
        return param.encode(value)

    def _device_lines(self) -> list[str]:
        verb = self._verb()
        lines = []
        for name, param in self.family.device_params.items():
            value = self.device.get(param.field)
            if name == "DEVICE_ID":
                lines.append(f"{verb} DEVICE_ID {brace(value or '', self.family.device_name_width)}")
            else:
                lines.append(f"{verb} {name} {param.encode(value)}")
        lines.extend(f"{verb} {name} {value}" for (ch, name, _), value in self.raw.items() if ch is None)
        return lines

    def _sample(self, channel: SimChannel) -> str:
        values = channel.values
        index = channel.index
        key = self.family.key
        rf = values.get("rf_dbm", NOISE_FLOOR_DBM)
        audio = values.get("audio_dbfs", SILENCE_DBFS)
        antenna = values.get("antenna")
        if key in ("ulxd", "qlxd"):
            return f"SAMPLE {index} ALL {antenna_marks(antenna, 2, None)} {rf + 128:03d} {audio + 50:03d}"
        peak = self._audio_peak(channel) + 120
        if key == "axient":
            quality = values.get("rf_quality_percent")
            levels = list(self._antenna_levels(channel).values())
            peak_bit = 128 if values.get("audio_peak") else 0
            level_bits = (1 << max(0, min(7, (audio + 60) // 8))) - 1
            rssi = " ".join(f"{31 if i == 0 else 0:02d} {level + 120:03d}" for i, level in enumerate(levels))
            return (
                f"SAMPLE {index} ALL {255 if quality is None else quality // 20:03d} {peak_bit | level_bits:03d} "
                f"{peak:03d} {audio + 120:03d} {antenna_marks(antenna, len(levels), 'B')} {rssi}"
            )
        if key in ("slxd", "slxd_plus"):
            return f"SAMPLE {index} ALL {peak:03d} {audio + 120:03d} {rf + 120:03d}"
        bars = values.get("battery_bars")
        bitmap = (1 << (8 + audio // 6)) - 1 if audio > -48 else 0
        return f"SAMPLE {index} ALL {antenna_marks(antenna, 2, None)} {-rf} X {255 if bars is None else bars} {bitmap}"

    # output

    def broadcast(self, lines: Iterable[str]) -> None:
        data = b"".join(self._message(line) for line in lines)
        if data and not self.silent:
            for peer in list(self.peers):
                peer.send(data)

    def send_garbage(self, data: bytes = b"\x00\xff garbage >>> {{ <<< REP 9 ?? ") -> None:
        for peer in list(self.peers):
            peer.write_now(data)

    def answer(self, request: bytes) -> bytes:
        """What a client sending ``request`` gets back at once (its replies, not echoes to other clients),
        without a socket: for checking this simulator's encoding against the conformance corpus."""
        capture = _Capture(self)
        capture.received(request)
        return b"".join(capture.captured)

    def drop_clients(self) -> None:
        for peer in list(self.peers):
            peer.abort()

    def release(self) -> None:
        """Stop holding: every client gets the answers held for it, in the order it asked."""
        self.holding = False
        for peer in list(self.peers):
            held, peer.held = peer.held, []
            for data in held:
                peer._write(data)

    def forget(self, peer: _Peer, closed_by_client: bool) -> None:
        if peer in self.peers:
            self.peers.remove(peer)
            self.closed_clients.append(ClientRecord(peer.name, closed_by_client, bool(peer.requested_meter_rate)))

    # requests

    def handle(self, peer: _Peer, report: Report | None) -> None:
        if report is None:
            peer.send(self._message(f"{self._verb()} ERR"))
            return
        self.received.append(f"{report.verb} {report.channel or ''} {report.param} {report.value}".strip())
        if report.verb == "SET" and report.param in self.unconfirmed_once:
            self.unconfirmed_once.discard(report.param)
            self.unanswered_peer = peer
            try:
                self._set(peer, report)
            finally:
                self.unanswered_peer = None
            return
        if report.verb == "GET":
            self._get(peer, report)
        elif report.verb == "SET":
            self._set(peer, report)
        elif report.verb == "METER" and self.family.udp:
            self._meter(peer, report)
        else:
            peer.send(self._message(f"{self._verb()} ERR"))

    def _error(self, peer: _Peer) -> None:
        peer.send(self._message(f"{self._verb()} ERR"))

    def _targets(self, channel: int | None) -> list[SimChannel] | None:
        if channel == 0:
            return list(self.channels.values())
        found = self.channels.get(channel) if channel is not None else None
        return [found] if found is not None else None

    def _get(self, peer: _Peer, report: Report) -> None:
        param = report.param
        if param in self.refused_params:
            self._error(peer)
            return
        if param == "ALL":
            if self.family is SLXD_PLUS and report.channel in (0, None):
                # firmware 2.0.38.9 refuses the all-channels dump; GET n ALL gives device + channel n (CO SLX-D+ notes)
                self._error(peer)
                return
            lines = self._device_lines() if report.channel in (0, None) or self.family is SLXD_PLUS else []
            for channel in self._targets(report.channel or 0) or []:
                lines.extend(self._channel_lines(channel))
            peer.send(b"".join(self._message(line) for line in lines))
            return
        if report.channel is None and param == "NET_SETTINGS" and self.family.network and report.value == "SC":
            # zero-padded octets and the all-zero "no gateway", as the SLX-D+ command strings show them
            padded_ip = ".".join(f"{int(octet):03d}" for octet in self.device["ip_address"].split("."))
            mac = self.device["mac_address"]
            lines = [f"{self._verb()} NET_SETTINGS SC AUTO {padded_ip} 255.000.000.000 000.000.000.000 {mac}"]
        elif report.channel is None:
            lines = [line for line in self._device_lines() if line.split()[1] == param]
        else:
            targets = self._targets(report.channel)
            lines = []
            for channel in targets or []:
                lines.extend(line for line in self._channel_lines(channel) if line.split()[2] == param)
        if not lines:
            self._error(peer)
            return
        peer.send(b"".join(self._message(line) for line in lines))

    def _set(self, peer: _Peer, report: Report) -> None:
        targets = self._targets(report.channel)
        param, value = report.param, report.value
        if param in self.refused_params:
            self._error(peer)
            return
        family = self.family
        verb = self._verb()
        if report.channel is None:
            if param == "FLASH" and family.key != "psm1000" and value.upper() in ("ON", "OFF"):
                self.broadcast([f"{verb} FLASH {value.upper()}"])
            elif param == family.device_name_param and param in family.device_params and self._name_ok(value, True):
                self.device["name"] = value
                self.broadcast(line for line in self._device_lines() if line.split()[1] == param)
            else:
                self._error(peer)
            return
        if targets is None:
            self._error(peer)
            return
        if param == "METER_RATE" and not family.udp and family.meter_rate and value.isdigit():
            rate = int(value)
            if rate and rate < 50:
                self._error(peer)
                return
            self._set_meter_rate(targets, rate)
            self.broadcast(f"{verb} {channel.index} METER_RATE {rate:05d}" for channel in targets)
            return
        if report.channel == 0:
            self._error(peer)
            return
        (channel,) = targets
        if param == "CHAN_NAME" and self._name_ok(value, False):
            self.set_channel(channel.index, name=value)
        elif param == "AUDIO_MUTE" and "muted" in family.fields and value.upper() in ("ON", "OFF", "TOGGLE"):
            muted = not channel.values["muted"] if value.upper() == "TOGGLE" else value.upper() == "ON"
            self.set_channel(channel.index, muted=muted, echo=True)
        elif param == "AUDIO_GAIN" and "gain_db" in family.fields and self._gain_ok(channel, report):
            pass
        elif param == "FREQUENCY" and "frequency_mhz" in family.fields and self._frequency_ok(value):
            self.set_channel(channel.index, frequency_mhz=int(value) / 1000, echo=True)
            if family is SLXD_PLUS:  # a frequency set by hand leaves the group/channel preset (CO SLX-D+ notes)
                self.set_channel(channel.index, group_channel=None)
        elif param == "RF_MUTE" and param in family.channel_params and value in ("0", "1"):
            self.set_channel(channel.index, tx_muted=value == "1")
        elif param == "FLASH" and family.channel_flash and value.upper() in ("ON", "OFF"):
            self.broadcast([f"{verb} {channel.index} FLASH {value.upper()}"])
        elif param == "RF_TX_LVL" and param in family.channel_params and value in ("10", "50", "100"):
            self.set_channel(channel.index, tx_power=f"{value}mW")
        elif (channel.index, param, report.index) in self.raw and value.upper() in _SLOT_SETTINGS.get(param, ()):
            self.raw[(channel.index, param, report.index)] = value.upper()
            self.broadcast([f"{verb} {channel.index} {param} {report.index} {value.upper()}"])
        else:
            self._error(peer)

    def _name_ok(self, name: str, device: bool) -> bool:
        limit = self.family.device_name_width if device else self.family.name_max
        return 0 < len(name) <= limit and all(" " <= char <= "~" and char not in "{}<>*" for char in name)

    def _gain_ok(self, channel: SimChannel, report: Report) -> bool:
        args = report.args
        current = channel.values["gain_db"] + GAIN_OFFSET
        if len(args) == 2 and args[0].upper() in ("INC", "DEC") and args[1].isdigit():
            step = int(args[1]) if args[0].upper() == "INC" else -int(args[1])
            wire = max(0, min(60, current + step))  # the device stops at the ends of its range
        elif len(args) == 1 and args[0].isdigit() and 0 <= int(args[0]) <= 60:
            wire = int(args[0])
        else:
            return False
        self.set_channel(channel.index, gain_db=wire - GAIN_OFFSET, echo=True)
        return True

    def _frequency_ok(self, value: str) -> bool:
        return value.isdigit() and len(value) == self.family.freq_digits and 100_000 <= int(value) < 1_000_000

    def _meter(self, peer: _Peer, report: Report) -> None:
        # UHF-R: "* METER <ch> ALL <nnn> *" with nnn = ms / 30, or "ALL STOP"
        targets = self._targets(report.channel)
        args = report.args
        if targets is None or report.param != "ALL" or len(args) != 1:
            self._error(peer)
            return
        rate = 0 if args[0].upper() == "STOP" else int(args[0]) * 30 if args[0].isdigit() else -1
        if rate < 0:
            self._error(peer)
            return
        self._set_meter_rate(targets, rate)

    def _set_meter_rate(self, channels: Iterable[SimChannel], rate_ms: int) -> None:
        for channel in channels:
            channel.meter_rate_ms = rate_ms
            channel.next_sample = 0.0  # the first SAMPLE at the new rate goes out now
        self._wake_meter()

    # state changes pushed to every client, as the device does

    def set_channel(self, index: int, *, echo: bool = True, **changes: Any) -> None:
        """Change channel fields (hub-model units) and push the REPs a receiver would send."""
        channel = self.channels[index]
        for name, value in changes.items():
            if name == "warnings":
                channel.warnings = set(value)
            elif name in self.family.fields:
                channel.values[name] = value
        if not echo:
            return
        lines = self._channel_lines(channel)
        changed_params = {
            wire
            for wire, param in self.family.channel_params.items()
            if param.field in changes and param.field not in self.family.sample_fields
        }
        if "warnings" in changes:
            changed_params |= {rule.param for rule in self.family.warnings}
        self.broadcast(line for line in lines if line.split()[2] in changed_params)

    def set_device(self, **changes: Any) -> None:
        """Change receiver-level fields (encryption_mode, front_panel_locked, ...) and push their REPs."""
        self.device.update(changes)
        changed = {wire for wire, param in self.family.device_params.items() if param.field in changes}
        self.broadcast(line for line in self._device_lines() if line.split()[1] in changed)

    def set_name(self, index: int, name: str) -> None:
        """The name was changed at the front panel."""
        self.set_channel(index, name=name)

    def set_tx_present(self, index: int, present: bool) -> None:
        """The transmitter was switched off (or on again)."""
        channel = self.channels[index]
        if channel.tx_on == present:
            return
        channel.tx_on = present
        tx_fields = (
            "tx_model",
            "tx_muted",
            "battery_bars",
            "battery_percent",
            "battery_runtime_min",
            "battery_type",
            "rf_dbm",
            "rf_quality_percent",
            "antenna",
            "audio_dbfs",
            "tx_id",
            "tx_offset_db",
            "tx_power",
            "tx_locked",
            "tx_talk_switch",
            "battery_health_percent",
            "battery_cycles",
            "battery_temp_c",
        )
        if present:
            changes: dict[str, Any] = {name: channel.tx_memory[name] for name in tx_fields if name in channel.tx_memory}
        else:
            channel.tx_memory.update({name: channel.values[name] for name in tx_fields if name in channel.values})
            changes = {name: None for name in tx_fields}
            changes.update(rf_dbm=NOISE_FLOOR_DBM, audio_dbfs=SILENCE_DBFS)
        changes["tx_present"] = present
        if self.family is SLXD_PLUS:
            model = changes.get("tx_model")
            self.raw[(index, "LINK_STATUS", 1)] = "online " if model else "offline"
            self.raw[(index, "SLOT_TX_MODEL", 1)] = brace(model or "", 10)
            self.broadcast(
                f"REP {index} {name} 1 {self.raw[index, name, 1]}" for name in ("LINK_STATUS", "SLOT_TX_MODEL")
            )
        self.set_channel(index, **{name: value for name, value in changes.items() if name in self.family.fields})

    def drain_battery(self, index: int, minutes: int = 1) -> None:
        channel = self.channels[index]
        runtime = channel.values.get("battery_runtime_min")
        if runtime is None:
            return
        runtime = max(0, runtime - minutes)
        changes: dict[str, Any] = {"battery_runtime_min": runtime, "battery_bars": min(5, runtime // 60)}
        if "battery_percent" in channel.values:
            changes["battery_percent"] = min(100, runtime * 100 // 360)
        self.set_channel(index, **changes)

    def set_meters(self, index: int, **meters: Any) -> None:
        """Change metered values: they travel in SAMPLE only, never as an unsolicited REP."""
        unknown = set(meters) - METER_FIELDS
        if unknown:
            raise ValueError(f"not meter fields: {sorted(unknown)}")
        self.set_channel(index, echo=False, **meters)

    def _wake_meter(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _meter_loop(self) -> None:
        while True:
            now = time.monotonic()
            due_next = now + 1.0
            lines = []
            for channel in self.channels.values():
                rate = channel.meter_rate_ms
                if not rate:
                    continue
                if channel.next_sample <= now:
                    lines.append(self._sample(channel))
                    channel.next_sample = max(channel.next_sample + rate / 1000, now)
                due_next = min(due_next, channel.next_sample)
            if lines and self.peers:
                self.broadcast(lines)
            # asyncio.wait, unlike wait_for on 3.11, never swallows a cancellation that races the wake-up
            self._wake = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._wake}, timeout=max(0.005, due_next - time.monotonic()))

    def animate(self, interval_s: float = 1.0, tx_off_chance: float = 0.02) -> None:
        """Move the simulator like a live stage: meters wander, batteries drain, transmitters switch off."""
        self._tasks.append(asyncio.ensure_future(self._animate(interval_s, tx_off_chance)))

    async def _animate(self, interval_s: float, tx_off_chance: float) -> None:
        rnd = self._random
        step = 6 if self.family is UHFR else 1
        while True:
            await asyncio.sleep(interval_s)
            for index, channel in self.channels.items():
                if not channel.tx_on:
                    if rnd.random() < 0.3:
                        self.set_tx_present(index, True)
                    continue
                if rnd.random() < tx_off_chance:
                    self.set_tx_present(index, False)
                    continue
                values = channel.values
                meters: dict[str, Any] = {}
                if "rf_dbm" in values:
                    meters["rf_dbm"] = max(-90, min(-35, values["rf_dbm"] + rnd.randint(-3, 3)))
                if "audio_dbfs" in values:
                    meters["audio_dbfs"] = max(-48, min(-6, values["audio_dbfs"] + step * rnd.randint(-2, 2)))
                self.set_meters(index, **meters)
                if rnd.random() < 0.2:
                    self.drain_battery(index)


async def start_many(family: str, count: int, host: str = "127.0.0.1", first_port: int = 0) -> list[ShureSimulator]:
    """Start ``count`` receivers in this process, on consecutive ports from ``first_port`` (0: OS-chosen)."""
    simulators = []
    try:
        for number in range(count):
            port = first_port + number if first_port else 0
            simulators.append(await ShureSimulator(family, host, port, seed=number).start())
    except BaseException:
        await asyncio.gather(*(sim.stop() for sim in simulators), return_exceptions=True)
        raise
    return simulators
