"""An EW-DX receiver in secure mode (SSCv2) on loopback, answering as the EW-DX OpenAPI documents it.

The document is ``api_docs.json`` in bitfocus/companion-module-sennheiser-ewdx (commit a7b7243, "EW-DX
service API" 1.7). Per receiver channel (channelId 0..N-1): ``/api/channel/{id}`` and its indicator
resources, ``/api/rf/channels/{id}``, and ``/api/transmitters/{id}`` (+ ``/battery``, ``/warnings``), which
answer 422 while no transmitter is linked. Writes answer 200 without a body, and the change arrives as an
SSE event. The limits below are the document's, written out here independently of the driver's tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from wmhub_sennheiser.families import EWDX_BANDS
from wmhub_sennheiser.simulator.ssc2 import Ssc2Simulator

NAME_PATTERN = re.compile(r"[\x20#*+,;\x2D\x2F<=|>0-9A-Z]{0,8}")  # PUT /api/channel/{id} name
GAINS = range(-3, 43, 3)  # gain: -3..42 dB, multipleOf 3
TX_TYPES = ("EW_DX_SKM", "EW_DX_SK")  # transmitter type enum members


@dataclass
class SimEwdxChannel:
    """One receiver channel and the transmitter linked to it."""

    name: str
    khz: int
    muted: bool = False
    gain: int = 0
    identify: bool = False
    tx_on: bool = True
    tx_type: str = "EW_DX_SKM"
    tx_muted: bool = False
    tx_lock: bool = False
    tx_trim: int = 0
    battery_gauge: int = 90
    battery_type: str = "Battery"
    rssi: float = -60.0
    rsqi: int = 100
    divi: int = 1
    level: float = -30.0
    rx_warnings: list[str] = field(default_factory=list)

    @property
    def lifetime_min(self) -> int:
        return self.battery_gauge * 5

    @property
    def has_battery(self) -> bool:
        return self.battery_type != "NoBattery"


class EwdxSsc2Simulator(Ssc2Simulator):
    """An EW-DX EM 2 (``EWDX2CHS``) or EM 4 Dante (``EWDX4CHDS``) receiver speaking SSCv2."""

    def __init__(self, *, product: str = "EWDX2CHS", device_name: str = "EWDXEM2", band: str = "Q1-9", **options: Any):
        super().__init__(
            product=product, device_name=device_name, user=options.pop("user", "api"), mobiles=0, **options
        )
        self.band = band
        self.firmware = "4.0.1"
        self.encryption = True
        self.device_identify = False
        low = EWDX_BANDS[band][0][0]
        count = 4 if "4CH" in product else 2
        self.channels = [SimEwdxChannel(name=f"CH {n + 1}", khz=low + 1_000 * (n + 1)) for n in range(count)]

    # --- state, in hub-model terms

    def expected_device(self) -> dict[str, Any]:
        return {
            "id": f"sennheiser-{self.serial}",
            "name": self.device_name,
            "model": self.product,
            "firmware": self.firmware,
            "rf_band": self.band,
            "encryption_mode": "on" if self.encryption else "off",
        }

    def expected_channels(self) -> dict[int, dict[str, Any]]:
        expected = {}
        for index, channel in enumerate(self.channels, start=1):
            on = channel.tx_on
            expected[index] = {
                "name": channel.name,
                "muted": channel.muted,
                "gain_db": float(channel.gain),
                "frequency_mhz": channel.khz / 1000,
                "rf_dbm": channel.rssi,
                "rf_quality_percent": channel.rsqi,
                "antenna": "AB"[channel.divi - 1] if channel.divi else None,
                "audio_dbfs": channel.level,
                "tx_present": on,
                "tx_model": channel.tx_type if on else None,
                "tx_muted": channel.tx_muted if on else None,
                "tx_locked": ("all" if channel.tx_lock else "none") if on else None,
                "tx_offset_db": float(channel.tx_trim) if on else None,
                # with no battery (external power) the gauge measures nothing: no reading, not an empty battery
                "battery_percent": channel.battery_gauge if on and channel.has_battery else None,
                "battery_runtime_min": channel.lifetime_min if on and channel.has_battery else None,
                "battery_type": channel.battery_type if on else None,
                "warnings": self.warnings + channel.rx_warnings + (["LowBattery"] if on and self._low(channel) else []),
            }
        return expected

    @staticmethod
    def _low(channel: SimEwdxChannel) -> bool:
        return channel.has_battery and channel.battery_gauge < 20

    # --- changes

    def tick(self) -> None:
        for channel in self.channels:
            if channel.tx_on:
                channel.rssi = self._random.randint(-180, -100) / 2
                channel.rsqi = self._random.randint(50, 100)
                channel.divi = self._random.choice((1, 2))
                channel.level = self._random.randint(-90, -10) / 2
                if self._random.random() < 0.1:
                    channel.battery_gauge = max(0, channel.battery_gauge - 1)
            else:
                channel.rssi, channel.rsqi, channel.divi, channel.level = -107.0, 0, 0, -138.5
        self._publish([path for n in range(len(self.channels)) for path in self._channel_paths(n)])

    def set_transmitter(self, index: int, on: bool) -> None:
        """Switch the transmitter on channel ``index`` (1-based) off or on."""
        channel = self.channels[index - 1]
        channel.tx_on = on
        if not on:
            channel.rssi, channel.rsqi, channel.divi, channel.level = -107.0, 0, 0, -138.5
        self._publish(self._channel_paths(index - 1))

    def set_battery(self, index: int, gauge: int, battery_type: str = "Battery") -> None:
        """The transmitter's battery on channel ``index``: its gauge and type (Battery, PrimaryCell, NoBattery)."""
        self.channels[index - 1].battery_gauge = gauge
        self.channels[index - 1].battery_type = battery_type
        n = index - 1
        self._publish([f"/api/transmitters/{n}/battery", f"/api/transmitters/{n}/warnings"])

    @staticmethod
    def _channel_paths(n: int) -> list[str]:
        return [
            f"/api/channel/{n}/signalStrengthIndicator",
            f"/api/channel/{n}/signalQualityIndicator",
            f"/api/channel/{n}/diversityIndicator",
            f"/api/channel/{n}/level",
            f"/api/transmitters/{n}",
            f"/api/transmitters/{n}/battery",
            f"/api/transmitters/{n}/warnings",
        ]

    # --- resources

    def _resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = {
            "/api/device/identity": {
                "product": self.product,
                "hardwareRevision": "0596715-06",
                "serial": self.serial,
                "vendor": "Sennheiser electronic SE & Co. KG",
            },
            "/api/device/site": {"deviceName": self.device_name, "location": self.location, "position": ""},
            "/api/device/state": {
                "state": "Identifying" if self.device_identify else "Normal",
                "warnings": self.warnings,
            },
            "/api/device/identification": {"visual": self.device_identify},
            "/api/firmware/update/state": {
                "deviceVersion": self.firmware,
                "danteVersion": "4.2.0.9",
                "state": "Idle",
                "progress": 0,
                "lastStatus": "None",
            },
            "/api/rf": {
                "code": self.band,
                "ranges": [{"start": start, "end": end, "stepSize": 25} for start, end in EWDX_BANDS[self.band]],
            },
            "/api/rf/encryption": {"enabled": self.encryption},
            "/api/rf/transmission": {"mode": "Standard", "presetSpacing": 25},
        }
        for n, channel in enumerate(self.channels):
            resources.update(self._channel_resources(n, channel))
        return resources

    def _channel_resources(self, n: int, channel: SimEwdxChannel) -> dict[str, Any]:
        resources: dict[str, Any] = {
            f"/api/channel/{n}": {
                "name": channel.name,
                "mute": channel.muted,
                "mates": [f"TX{n + 1}"],
                "gain": channel.gain,
                "audio": [f"Out{n + 1}"],
                "outputLevel": 0,
                "eventCounter": 0,
            },
            f"/api/channel/{n}/warnings": list(channel.rx_warnings),
            f"/api/channel/{n}/identify": {"enabled": channel.identify},
            f"/api/channel/{n}/signalStrengthIndicator": {"value": channel.rssi},
            f"/api/channel/{n}/signalQualityIndicator": {"value": channel.rsqi},
            f"/api/channel/{n}/diversityIndicator": {"value": channel.divi},
            f"/api/channel/{n}/level": {"value": channel.level},
            f"/api/rf/channels/{n}": {"frequency": channel.khz, "presets": {"type": "None"}},
        }
        if channel.tx_on:  # while none is linked the transmitter resources do not exist (422)
            resources[f"/api/transmitters/{n}"] = {
                "type": channel.tx_type,
                "lowcut": "80Hz",
                "capsule": "MMD_835",
                "name": channel.name,
                "trim": channel.tx_trim,
                "led": True,
                "version": "4.0.0",
                "lock": channel.tx_lock,
                "mute": channel.tx_muted,
                "identification": False,
            }
            resources[f"/api/transmitters/{n}/battery"] = {
                "type": channel.battery_type,
                "lifetime": channel.lifetime_min,
                "gauge": channel.battery_gauge,
            }
            resources[f"/api/transmitters/{n}/warnings"] = ["LowBattery"] if self._low(channel) else []
        return resources

    def _read(self, path: str) -> Any:
        resources = self._resources()
        if path == "/api/transmitters":  # [{id, transmitter}] for each linked transmitter
            return [
                {"id": n, "transmitter": resources[f"/api/transmitters/{n}"]}
                for n in range(len(self.channels))
                if f"/api/transmitters/{n}" in resources
            ]
        return resources[path]

    async def _get_resource(self, request: web.Request) -> web.Response:
        path = request.path
        try:
            return web.json_response(self._read(path))
        except KeyError:
            found = re.fullmatch(r"/api/transmitters/(\d+)(/battery|/warnings)?", path)
            if found and int(found.group(1)) < len(self.channels):
                return self._error(422, "Missing property values as no Transmitter is linked")
            return self._error(404, f"no resource {path}")

    # --- writes (200 without a body; the change arrives as an event)

    def _add_writes(self, app: web.Application) -> None:
        app.router.add_put("/api/channel/{n:\\d+}", self._put_channel)
        app.router.add_put("/api/channel/{n:\\d+}/identify", self._put_channel_identify)
        app.router.add_put("/api/rf/channels/{n:\\d+}/frequency", self._put_frequency)
        app.router.add_put("/api/device/identification", self._put_device_identify)

    def _channel_of(self, request: web.Request) -> tuple[int, SimEwdxChannel]:
        n = int(request.match_info["n"])
        if n >= len(self.channels):
            raise web.HTTPNotFound(text='{"error": 404}', content_type="application/json")
        return n, self.channels[n]

    def _accepted(self, path: str, body: Any, changed: str) -> web.Response:
        self.writes.append((path, body))
        self._publish([changed])
        return web.Response(status=200)

    async def _put_channel(self, request: web.Request) -> web.Response:
        n, channel = self._channel_of(request)
        body = await self._body(request)
        if not isinstance(body, dict) or not body or not set(body) <= {"name", "mute", "gain", "outputLevel"}:
            return self._error(400, "Bad request")
        name, mute, gain = (
            body.get("name", channel.name),
            body.get("mute", channel.muted),
            body.get("gain", channel.gain),
        )
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            return self._error(400, "Bad request")
        if not isinstance(mute, bool) or isinstance(gain, bool) or gain not in GAINS:
            return self._error(400, "Bad request")
        channel.name, channel.muted, channel.gain = name, mute, int(gain)
        return self._accepted(request.path, body, f"/api/channel/{n}")

    async def _put_channel_identify(self, request: web.Request) -> web.Response:
        n, channel = self._channel_of(request)
        body = await self._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            return self._error(400, "Bad request")
        channel.identify = body["enabled"]
        return self._accepted(request.path, body, f"/api/channel/{n}/identify")

    async def _put_frequency(self, request: web.Request) -> web.Response:
        n, channel = self._channel_of(request)
        body = await self._body(request)
        khz = body.get("frequency") if isinstance(body, dict) else None
        if isinstance(khz, bool) or not isinstance(khz, int) or khz % 25:
            return self._error(400, "Bad request")
        if not any(start <= khz <= end for start, end in EWDX_BANDS[self.band]):
            return self._error(400, "Bad request")
        channel.khz = khz
        return self._accepted(request.path, body, f"/api/rf/channels/{n}")

    async def _put_device_identify(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("visual"), bool):
            return self._error(400, "Bad request")
        self.device_identify = body["visual"]
        return self._accepted(request.path, body, "/api/device/identification")
