"""The SSCv1 products the simulator can be: their address trees, writable leaves and what a client must show.

Written from the protocol reference independently of the client's maps (wmhub_sennheiser.families), so
that a test comparing the two checks the client rather than repeating it.
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Final

from wmhub_sennheiser.families import EWDX_BANDS
from wmhub_sennheiser.simulator.common import SimChannel, default_channels
from wmhub_sennheiser.simulator.ssc_json import Address

VENDOR: Final = "Sennheiser electronic GmbH & Co. KG"
PRINTABLE_8: Final = r"[\x20-\x7e]{0,8}"


class Refusal(Exception):
    """A write the device refuses; ``code`` is the SSC error code it answers with."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Refusal(406)
    return value


def _text(pattern: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise Refusal(406)
        return value

    return check


def _grid(low: int, high: int, step: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high or (value - low) % step:
            raise Refusal(406)
        return value

    return check


Setter = Callable[[SimChannel | None, Any], Any]


class SimProduct(ABC):
    """One SSCv1 product: identity, channels, the readable tree now, writes and the expected client view."""

    key: str
    product: str
    version: str
    serial: str | None

    def __init__(self, channels: list[SimChannel], device_name: str) -> None:
        self.channels = channels
        self.device_name = device_name
        self.identifying = False

    def device_leaves(self) -> dict[Address, Any]:
        leaves: dict[Address, Any] = {
            ("device", "name"): self.device_name,
            ("device", "identity", "product"): self.product,
            ("device", "identity", "vendor"): VENDOR,
            ("device", "identity", "version"): self.version,
            ("device", "identification", "visual"): self.identifying,
        }
        if self.serial is not None:
            leaves[("device", "identity", "serial")] = self.serial
        return leaves

    def leaves(self) -> dict[Address, Any]:
        """Every readable leaf now; transmitter leaves are absent while the transmitter is off."""
        leaves = self.device_leaves()
        for channel in self.channels:
            leaves.update(self.channel_leaves(channel))
        return leaves

    def animate(self, rng: random.Random, tx_churn: float) -> None:
        for channel in self.channels:
            channel.animate(rng, tx_churn)

    def device_facts(self) -> dict[str, Any]:
        """The device fields (besides name, model, firmware) a correct client shows."""
        return {}

    @abstractmethod
    def channel_leaves(self, channel: SimChannel) -> dict[Address, Any]: ...

    @abstractmethod
    def transmitter_channel(self, path: Address) -> SimChannel | None:
        """The channel whose transmitter ``path`` belongs to (answered with 424 while it is off)."""

    @abstractmethod
    def expected(self, channel: SimChannel) -> dict[str, Any]:
        """The hub fields a correct client shows for this channel, from what this product reports."""

    def setters(self) -> dict[str, Setter]:
        """Writable addresses (``rx(\\d)`` captures the channel) and how each write is applied."""

        def device_name(_: SimChannel | None, value: Any) -> Any:
            self.device_name = _text(r"[\x20-\x7e]{1,63}")(value)
            return self.device_name

        def identify(_: SimChannel | None, value: Any) -> Any:
            self.identifying = _bool(value)
            return self.identifying

        return {"device/name": device_name, "device/identification/visual": identify}

    def write(self, path: Address, value: Any) -> Any:
        """Apply a write; returns the value applied, or raises Refusal (404 unknown, 406 not acceptable)."""
        text = "/".join(path)
        for pattern, setter in self.setters().items():
            match = re.fullmatch(pattern, text)
            if match:
                channel = self.channel(int(match.group(1))) if match.groups() else None
                if match.groups() and channel is None:
                    raise Refusal(404)
                return setter(channel, value)
        raise Refusal(406 if path in self.leaves() else 404)

    def channel(self, index: int) -> SimChannel | None:
        return next((channel for channel in self.channels if channel.index == index), None)

    def _tx_channel(self, path: Address, prefix: str) -> SimChannel | None:
        match = re.match(prefix, "/".join(path))
        return self.channel(int(match.group(1))) if match else None


def _rx_setters(name_pattern: str, mute_leaf: str) -> dict[str, Setter]:
    def name(channel: SimChannel | None, value: Any) -> Any:
        assert channel is not None
        channel.name = _text(name_pattern)(value)
        return channel.name

    def mute(channel: SimChannel | None, value: Any) -> Any:
        assert channel is not None
        channel.muted = _bool(value)
        return channel.muted

    return {r"rx(\d+)/name": name, rf"rx(\d+)/{mute_leaf}": mute}


def _frequency_setter(low: int, high: int) -> Setter:
    def frequency(channel: SimChannel | None, value: Any) -> Any:
        assert channel is not None
        channel.frequency_khz = _grid(low, high, 25)(value)
        return channel.frequency_khz

    return frequency


class EwDx(SimProduct):
    """EW-DX EM 2 / EM 4: rx, m (metering) and mates trees."""

    version = "3.2.0"
    # the simulated band variant: the frequency_code it reports and where it tunes (the demo's is one whose span
    # the hub does not know, DEMO_EWDX_BAND)
    frequency_code = "Q1-9"
    band_khz = EWDX_BANDS["Q1-9"][0]

    def __init__(self, channel_count: int, serial: str = "1049471234") -> None:
        super().__init__(default_channels(channel_count, 520_000, "Vocal"), f"EW-DX EM {channel_count}")
        self.key = f"ewdx-em{channel_count}"
        self.product = f"EW-DX EM {channel_count}"
        self.serial = serial
        self.channel_identifying: dict[int, bool] = {}
        self.encryption = True
        self.panel_locked = False

    def device_leaves(self) -> dict[Address, Any]:
        # reference 1.6: /device/{encryption,lock,frequency_code}, /device/network/...; the MAC list holds one
        # entry per Ethernet interface (its shape unverified)
        return {
            **super().device_leaves(),
            ("device", "encryption"): self.encryption,
            ("device", "lock"): self.panel_locked,
            ("device", "frequency_code"): self.frequency_code,
            ("device", "network", "ipv4", "ipaddr"): "127.0.0.1",
            ("device", "network", "ether", "macs"): ["00:1b:66:12:34:56"],
        }

    def animate(self, rng: random.Random, tx_churn: float) -> None:
        for channel in self.channels:
            channel.animate(rng, tx_churn)

    def device_facts(self) -> dict[str, Any]:
        return {
            "encryption_mode": "on" if self.encryption else "off",
            "front_panel_locked": self.panel_locked,
            "rf_band": self.frequency_code,
            "ip_address": "127.0.0.1",
            "mac_address": "00:1b:66:12:34:56",
        }

    def channel_leaves(self, channel: SimChannel) -> dict[Address, Any]:
        rx, n = f"rx{channel.index}", channel.index
        leaves: dict[Address, Any] = {
            (rx, "name"): channel.name,
            (rx, "frequency"): channel.frequency_khz,
            (rx, "mute"): channel.muted,
            (rx, "gain"): channel.gain_db,
            (rx, "warnings"): list(channel.rx_warnings),
            (rx, "identification", "visual"): self.channel_identifying.get(n, False),
            ("m", rx, "rsqi"): channel.rf_quality if channel.tx_on else 0,
            ("m", rx, "divi"): channel.antenna if channel.tx_on else 0,
            ("m", rx, "rssi"): round(channel.rssi_dbm, 1) if channel.tx_on else -100.0,
            ("m", rx, "af"): round(channel.af_dbfs, 1) if channel.tx_on else -90.0,
        }
        if channel.tx_on:
            tx = ("mates", f"tx{n}")
            leaves[(*tx, "battery", "gauge")] = channel.battery_percent
            leaves[(*tx, "battery", "lifetime")] = channel.battery_runtime_min
            leaves[(*tx, "battery", "type")] = channel.battery_type
            leaves[(*tx, "mute")] = channel.tx_muted
            leaves[(*tx, "type")] = channel.tx_model
            leaves[(*tx, "warnings")] = channel.tx_warnings()
            leaves[(*tx, "lock")] = channel.tx_locked
            leaves[(*tx, "trim")] = channel.tx_trim_db
        return leaves

    def transmitter_channel(self, path: Address) -> SimChannel | None:
        return self._tx_channel(path, r"mates/tx(\d+)(/|$)")

    def setters(self) -> dict[str, Setter]:
        def gain(channel: SimChannel | None, value: Any) -> Any:
            assert channel is not None
            channel.gain_db = _grid(-3, 42, 3)(value)
            return channel.gain_db

        def identify(channel: SimChannel | None, value: Any) -> Any:
            assert channel is not None
            self.channel_identifying[channel.index] = _bool(value)
            return self.channel_identifying[channel.index]

        return {
            **super().setters(),
            **_rx_setters(PRINTABLE_8, "mute"),
            r"rx(\d+)/gain": gain,
            r"rx(\d+)/frequency": _frequency_setter(*self.band_khz),
            r"rx(\d+)/identification/visual": identify,
        }

    def expected(self, channel: SimChannel) -> dict[str, Any]:
        on = channel.tx_on
        return {
            "name": channel.name,
            "frequency_mhz": channel.frequency_khz / 1000,
            "muted": channel.muted,
            "gain_db": channel.gain_db,
            "tx_present": on,
            "tx_model": channel.tx_model if on else None,
            "tx_muted": channel.tx_muted if on else None,
            "battery_percent": channel.battery_percent if on else None,
            "battery_runtime_min": channel.battery_runtime_min if on else None,
            "battery_type": channel.battery_type if on else None,
            "rf_quality_percent": channel.rf_quality if on else 0,
            "rf_dbm": round(channel.rssi_dbm, 1) if on else -100.0,
            "antenna": ("A" if channel.antenna == 1 else "B") if on else None,
            "audio_dbfs": round(channel.af_dbfs, 1) if on else -90.0,
            "warnings": channel.rx_warnings + channel.tx_warnings(),
            "tx_locked": ("all" if channel.tx_locked else "none") if on else None,
            "tx_offset_db": channel.tx_trim_db if on else None,
        }


def _byte(value: float) -> int:
    return max(0, min(255, round(value)))


class Em6000(SimProduct):
    """Digital 6000 EM 6000: rx/skx trees and the ``mm`` meter array; its identity has no serial."""

    key = "em6000"
    product = "EM6000"
    version = "1.1.4.74"
    serial = None

    def __init__(self) -> None:
        super().__init__(default_channels(2, 560_000, "Lead"), "EM6000 Stage")
        self.channel_identifying: dict[int, bool] = {}

    @staticmethod
    def battery_state(percent: int) -> str:
        return next((f"{step}%" for step in (100, 70, 30) if percent >= step - 15), "low")

    # where this simulator raises the peak flags (the guide gives no thresholds)
    RF_PEAK_DBM: Final = -25.0
    AF_PEAK_DBFS: Final = -3.0

    def meter_row(self, channel: SimChannel) -> list[int]:
        """``[RF1, RF1_PEAK, RF2, RF2_PEAK, DIV1, DIV2, LQI, AF, AF_PEAK]``: the peak columns are 0/1 flags."""
        on = channel.tx_on
        rf = _byte(2 * (channel.rssi_dbm if on else -100.0) + 255)
        af = _byte((channel.af_dbfs + 128) * 2 - 1) if on else 0
        rf1, rf2 = (rf, max(0, rf - 12)) if channel.antenna == 1 else (max(0, rf - 12), rf)
        div1, div2 = (int(on and channel.antenna == 1), int(on and channel.antenna == 2))
        rf_peak = on and channel.rssi_dbm >= self.RF_PEAK_DBM
        rf1_peak, rf2_peak = int(rf_peak and channel.antenna == 1), int(rf_peak and channel.antenna == 2)
        af_peak = int(on and channel.af_dbfs >= self.AF_PEAK_DBFS)
        lqi = _byte(channel.rf_quality * 255 / 100) if on else 0
        return [rf1, rf1_peak, rf2, rf2_peak, div1, div2, lqi, af, af_peak]

    def leaves(self) -> dict[Address, Any]:
        return {**super().leaves(), ("mm",): [self.meter_row(channel) for channel in self.channels]}

    def channel_leaves(self, channel: SimChannel) -> dict[Address, Any]:
        rx = f"rx{channel.index}"
        warnings = channel.rx_warnings + channel.tx_warnings() + ([] if channel.tx_on else ["NoLink"])
        leaves: dict[Address, Any] = {
            (rx, "name"): channel.name,
            (rx, "carrier"): channel.frequency_khz,
            (rx, "audio_mute"): channel.muted,
            (rx, "active_warnings"): warnings,
            (rx, "identify"): self.channel_identifying.get(channel.index, False),
            (rx, "skx", "battery"): [],
            (rx, "skx", "autolock"): "",  # no transmitter reports (D6000 guide 8.28)
            (rx, "active_bank_channel"): [channel.bank, channel.preset],
            (rx, "encryption"): channel.encrypted,
        }
        if channel.tx_on:
            hours, minutes = divmod(channel.battery_runtime_min, 60)
            leaves[(rx, "skx", "battery")] = [self.battery_state(channel.battery_percent), f"{hours}:{minutes:02d}"]
            leaves[(rx, "skx", "type")] = [channel.tx_model, "470100", "713900"]
            leaves[(rx, "skx", "autolock")] = "On" if channel.tx_locked else "Off"
        return leaves

    def transmitter_channel(self, path: Address) -> SimChannel | None:
        return self._tx_channel(path, r"rx(\d+)/skx(/|$)")

    def setters(self) -> dict[str, Setter]:
        def identify(channel: SimChannel | None, value: Any) -> Any:
            assert channel is not None
            self.channel_identifying[channel.index] = _bool(value)
            return self.channel_identifying[channel.index]

        return {
            **super().setters(),
            **_rx_setters(PRINTABLE_8, "audio_mute"),
            r"rx(\d+)/carrier": _frequency_setter(470_100, 713_900),
            r"rx(\d+)/identify": identify,
        }

    def expected(self, channel: SimChannel) -> dict[str, Any]:
        on = channel.tx_on
        rf1, _, rf2, _, div1, div2, lqi, af, af_peak = self.meter_row(channel)
        state = self.battery_state(channel.battery_percent)
        return {
            "name": channel.name,
            "frequency_mhz": channel.frequency_khz / 1000,
            "muted": channel.muted,
            "tx_present": on,
            "tx_model": channel.tx_model if on else None,
            "battery_percent": int(state[:-1]) if on and state != "low" else None,
            "battery_runtime_min": channel.battery_runtime_min if on else None,
            "rf_dbm": (max(rf1, rf2) - 255) / 2,
            "antenna": {(1, 0): "A", (0, 1): "B"}.get((div1, div2)),
            "rf_quality_percent": round(100 * lqi / 255),
            "audio_dbfs": (af + 1) / 2 - 128,
            "audio_peak": af_peak == 1,
            "audio_peak_dbfs": None,
            "rf_antennas": {"RF1": (rf1 - 255) / 2, "RF2": (rf2 - 255) / 2},
            "warnings": self.channel_leaves(channel)[(f"rx{channel.index}", "active_warnings")],
            "group_channel": f"{channel.bank}.{channel.preset}",
            "encryption": "on" if channel.encrypted else "off",
            "tx_locked": ("all" if channel.tx_locked else "none") if on else None,
        }


class SpeechLineDw(SimProduct):
    """SpeechLine Digital Wireless rack receiver: one channel, flat ``bat_*`` transmitter leaves."""

    key = "sldw"
    product = "SLDW"  # the SL Rack Receiver DW's own product string (SLDW guide TI 1094 8.18)
    version = "2.1.0"

    def __init__(self, serial: str = "0551234567") -> None:
        super().__init__(default_channels(1, 1_880_000, "Desk"), "SL Rack 1")
        self.channels[0].name = "Desk_1"
        self.serial = serial

    def device_leaves(self) -> dict[Address, Any]:
        # the transmitters the receiver has a link with (SLDW guide 8.52)
        active = [f"tx{channel.index}" for channel in self.channels if channel.tx_on]
        return {**super().device_leaves(), ("mates", "active"): active}

    def channel_leaves(self, channel: SimChannel) -> dict[Address, Any]:
        rx, tx = f"rx{channel.index}", ("mates", f"tx{channel.index}")
        # the SL Series control spec (TI 1094) names mute_state, not mute: a client asking for /rxN/mute gets 404
        leaves: dict[Address, Any] = {
            (rx, "name"): channel.name,
            (rx, "mute_state"): channel.muted,
            (rx, "warnings"): list(channel.rx_warnings),
            (rx, "rf_quality"): channel.rf_quality if channel.tx_on else 0,
        }
        if channel.tx_on:
            leaves[(*tx, "bat_gauge")] = channel.battery_percent
            leaves[(*tx, "bat_lifetime")] = channel.battery_runtime_min * 60  # seconds on SL DW
            leaves[(*tx, "bat_bars")] = round(channel.battery_percent / 20)
            leaves[(*tx, "bat_health")] = channel.battery_health_percent
            leaves[(*tx, "bat_cycles")] = channel.battery_cycles
            leaves[(*tx, "warnings")] = channel.tx_warnings()
        return leaves

    def transmitter_channel(self, path: Address) -> SimChannel | None:
        return self._tx_channel(path, r"mates/tx(\d+)(/|$)")

    def setters(self) -> dict[str, Setter]:
        return {**super().setters(), **_rx_setters(r"[0-9A-Za-z_-]{0,8}", "mute_state")}

    def expected(self, channel: SimChannel) -> dict[str, Any]:
        on = channel.tx_on
        return {
            "name": channel.name,
            "muted": channel.muted,
            "tx_present": on,
            "battery_percent": channel.battery_percent if on else None,
            "battery_runtime_min": channel.battery_runtime_min if on else None,
            "battery_bars": round(channel.battery_percent / 20) if on else None,
            "battery_health_percent": channel.battery_health_percent if on else None,
            "battery_cycles": channel.battery_cycles if on else None,
            "rf_quality_percent": channel.rf_quality if on else 0,
            "warnings": channel.rx_warnings + channel.tx_warnings(),
        }


class Chg70n(SimProduct):
    """EW-DX CHG 70N network charger: two bays, every ``bays`` leaf a list with one entry per bay.

    Leaves as Companion ewdx src/chg70n.ts subscribes and reads them (``bat_gauge``, ``bat_health``,
    ``bat_cycles``, ``bat_timetofull``, ``device_type`` with ``NONE`` for an empty bay, ``serial``,
    ``warnings`` a list per bay); an empty bay reports zeros and empty strings here (unverified).
    """

    key = "chg70n"
    product = "CHG 70N"
    version = "1.0.6"

    def __init__(self, serial: str = "3141592653") -> None:
        super().__init__(default_channels(2, 0, "Bay"), "CHG 70N Rack")
        self.serial = serial
        self.pack_serials = [f"{bay.index}00{serial[:5]}" for bay in self.channels]  # of the device in each bay
        models = ("EW-DX SKM", "BA70")
        for channel, model, percent in zip(self.channels, models, (64, 100), strict=True):
            channel.tx_model, channel.battery_percent = model, percent

    @staticmethod
    def minutes_to_full(channel: SimChannel) -> int:
        return round((100 - channel.battery_percent) * 1.5) if channel.tx_on else 0

    def device_leaves(self) -> dict[Address, Any]:
        return {**super().device_leaves(), ("device", "network", "ipv4", "ipaddr"): "127.0.0.1"}

    def device_facts(self) -> dict[str, Any]:
        return {"ip_address": "127.0.0.1"}

    def leaves(self) -> dict[Address, Any]:
        bays = self.channels

        def each(value: Callable[[SimChannel], Any], empty: Any) -> list[Any]:
            return [value(bay) if bay.tx_on else empty for bay in bays]

        return {
            **self.device_leaves(),
            ("bays", "bat_gauge"): each(lambda bay: bay.battery_percent, 0),
            ("bays", "bat_health"): each(lambda bay: bay.battery_health_percent, 0),
            ("bays", "bat_cycles"): each(lambda bay: bay.battery_cycles, 0),
            ("bays", "bat_timetofull"): [self.minutes_to_full(bay) for bay in bays],
            ("bays", "device_type"): each(lambda bay: bay.tx_model, "NONE"),
            ("bays", "serial"): each(lambda bay: self.pack_serials[bay.index - 1], ""),
            ("bays", "warnings"): each(lambda bay: list(bay.rx_warnings), []),
        }

    def channel_leaves(self, channel: SimChannel) -> dict[Address, Any]:
        return {}  # the bays' leaves are lists over all bays (leaves())

    def transmitter_channel(self, path: Address) -> SimChannel | None:
        return None

    def animate(self, rng: random.Random, tx_churn: float) -> None:
        """Packs charge up; now and then one is taken out or put in (a fresh one, half full) or gets too warm."""
        for bay in self.channels:
            if rng.random() < tx_churn:
                bay.tx_on = not bay.tx_on
                bay.battery_percent = bay.battery_percent if not bay.tx_on else 50
            if bay.tx_on and bay.battery_percent < 100 and rng.random() < 0.2:
                bay.battery_percent += 1
            if rng.random() < 0.01:  # a pack warms up out of its charging range, or cools down again
                bay.rx_warnings = [] if bay.rx_warnings else ["BatteryTempOutOfRange"]

    def expected(self, channel: SimChannel) -> dict[str, Any]:
        on = channel.tx_on
        minutes = self.minutes_to_full(channel)
        state = ("charging" if minutes else "charged" if channel.battery_percent == 100 else None) if on else None
        return {
            "tx_present": on,
            "tx_model": channel.tx_model if on else None,
            "tx_id": self.pack_serials[channel.index - 1] if on else None,
            "battery_percent": channel.battery_percent if on else None,
            "battery_health_percent": channel.battery_health_percent if on else None,
            "battery_cycles": channel.battery_cycles if on else None,
            "battery_time_to_full_min": minutes if on else None,
            "battery_charge_state": state,
            "warnings": list(channel.rx_warnings) if on else [],
        }


PRODUCTS: Final[dict[str, Callable[[], SimProduct]]] = {
    "ewdx-em2": lambda: EwDx(2),
    "ewdx-em4": lambda: EwDx(4),
    "em6000": Em6000,
    "sldw": SpeechLineDw,
    "chg70n": Chg70n,
}
