"""A simulated ew G4 receiver (EM 300-500 G4) speaking the Media Control Protocol over UDP on loopback.

Commands are case-sensitive and CR-terminated; errors are ``<code>: <text> [ <instruction> ]``. ``Push``
starts cyclic reports per client that stop when its timeout expires; configuration attributes are sent
on change to clients that asked for them (mode bit 1). Run it alone with
``python -m wmhub_sennheiser.simulator --protocol g4 --model g4-em300``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from wmhub_sennheiser.simulator.common import Client, SimChannel, UdpSimulator, command_line, default_channels, serve

MODELS: Final = {"g4-em300": "EM 300-500 G4"}
FIRMWARE: Final = "3.0.4"
RF_CONFIG: Final = ((470_200, 515_800, 25),)  # band A1, one sub-range: (low kHz, high kHz, step kHz) each
CONFIG_ORDER: Final = ("Name", "Frequency", "Mute", "Squelch", "AfOut", "Equalizer")  # reported in this order
# The device's own tables (TI 1254), kept here rather than taken from the driver's codec, so that a mistake
# in one is caught by the other (and both by the transcripts, tests/transcripts/g4-em.txt).
ERROR_TEXT: Final = {
    1000: "Invalid command",
    1010: "Invalid parameter",
    1020: "Value out of range",
    1030: "Relative parameters not supported",
    1040: "Invalid numbers of parameter",
    1050: "Incorrect termination",
}
CONFIG_DUMP: Final = ("Name", "Frequency", "Squelch", "AfOut", "Equalizer", "Mute")  # TI 1254 p.8
SEND_CONFIG, SEND_ON_WARNING, SEND_ON_PILOT_OR_BATTERY = 1, 2, 4  # Push mode bits, TI 1254 p.11


@dataclass
class PushClient:
    expires_at: float
    cycle_ms: int
    mode: int
    next_due: float


class CommandError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _ints(args: list[str], count: int) -> list[int]:
    if len(args) != count:
        raise CommandError(1040)
    if any(arg.startswith("#") for arg in args):
        raise CommandError(1030)
    try:
        return [int(arg) for arg in args]
    except ValueError:
        raise CommandError(1010) from None


class G4Simulator(UdpSimulator):
    """One EM G4 receiver (one channel)."""

    models: ClassVar[dict[str, str]] = MODELS
    scheme: ClassVar[str] = "sennheiser-g4"
    config_order: ClassVar[tuple[str, ...]] = CONFIG_ORDER
    config_dump: ClassVar[tuple[str, ...]] = CONFIG_DUMP

    def __init__(
        self, model: str = "g4-em300", *, host: str = "127.0.0.1", port: int = 0, tick_s: float = 1.0, seed: int = 1
    ) -> None:
        super().__init__(host=host, port=port, tick_s=tick_s, seed=seed)
        if model not in self.models:
            raise ValueError(f"unknown model {model!r} (known: {', '.join(self.models)})")
        self.model = model
        self.channel: SimChannel = default_channels(1, 498_000, "Vocal")[0]
        self.channel.name = "Vocal 1"
        self.rf_config: tuple[tuple[int, int, int], ...] = RF_CONFIG  # a test may give it several sub-ranges
        self.squelch = 5
        self.af_out = 0
        self.equalizer = 0
        self.config_index = 0
        self.push_clients: dict[Client, PushClient] = {}
        self.commands: list[str] = []  # every line received, for tests
        self.config_lines_lost = False  # fault: configuration changes reach clients only as a new Config index
        self._reported = self._signature()
        self._triggered = self._triggers()

    @property
    def channels(self) -> list[SimChannel]:
        return [self.channel]

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}?local_port=0"

    # --- encoding of the state

    def battery_report(self) -> str:
        if not self.channel.tx_on:
            return "?"
        return str(next(step for step in (100, 70, 30, 0) if self.channel.battery_percent >= step))

    def peak_percent(self) -> int:
        return max(0, min(100, round((self.channel.af_dbfs + 50) * 2))) if self.channel.tx_on else 0

    def mute_bits(self) -> int:
        bits = (2 if self.channel.tx_on and self.channel.tx_muted else 0) | (8 if self.channel.muted else 0)
        return (bits | 1) if bits else 0

    def warnings(self) -> list[str]:
        ch = self.channel
        found = [
            ("AF_Peak", ch.tx_on and ch.af_dbfs > -1),
            ("Low_Battery", ch.tx_on and ch.battery_percent < 30),
            ("TX_Mute", ch.tx_on and ch.tx_muted),
            ("Low_RF_Signal", not ch.tx_on or ch.rf_quality < 10),
            ("RX_Mute", ch.muted),
        ]
        return [name for name, active in found if active]

    def rf_percent(self) -> int:
        return self.channel.rf_quality if self.channel.tx_on else 2

    def antenna_percents(self) -> tuple[int, int]:
        """The cycle's highest level at RF1 and RF2 (the active antenna is the stronger one)."""
        level = self.rf_percent()
        weaker = max(0, level - 10)
        return (level, weaker) if self.channel.antenna == 1 else (weaker, level)

    def cyclic(self) -> bytes:
        ch = self.channel
        level = self.rf_percent()
        rf1, rf2 = self.antenna_percents()
        lines = [
            f"RF1 {max(0, rf1 - 5)} {rf1} {int(ch.antenna == 1)}",
            f"RF2 {max(0, rf2 - 5)} {rf2} {int(ch.antenna == 2)}",
            f"States {self.mute_bits()} {int(ch.tx_on)}",
            f"RF {level} {ch.antenna} {int(ch.tx_on)}",
            f"AF {self.peak_percent()} {min(100, self.peak_percent() + 5)} {self.mute_bits()}",
            f"Bat {self.battery_report()}",
            "Msg " + (" ".join(self.warnings()) or "OK"),
            f"Config {self.config_index}",
        ]
        return "".join(line + "\r" for line in lines).encode()

    def config_line(self, keyword: str) -> str:
        values: dict[str, Callable[[], str]] = {
            "Name": lambda: self.channel.name,
            "Frequency": lambda: f"{self.channel.frequency_khz} {self.channel.bank} {self.channel.preset}",
            "Squelch": lambda: str(self.squelch),
            "AfOut": lambda: str(self.af_out),
            "Equalizer": lambda: str(self.equalizer),
            "Mute": lambda: str(int(self.channel.muted)),
        }
        return f"{keyword} {values[keyword]()}"

    def expected_device(self) -> dict[str, Any]:
        return {"model": self.models[self.model], "firmware": FIRMWARE, "name": self.channel.name}

    def expected_channels(self) -> dict[int, dict[str, Any]]:
        ch, on = self.channel, self.channel.tx_on
        return {
            1: {
                "name": ch.name,
                "frequency_mhz": ch.frequency_khz / 1000,
                "muted": ch.muted,
                "tx_present": on,
                "tx_muted": ch.tx_muted if on else None,
                "battery_percent": int(self.battery_report()) if on else None,
                "rf_quality_percent": min(100, self.rf_percent()),
                "antenna": "A" if ch.antenna == 1 else "B",
                "audio_dbfs": -50 + self.peak_percent() / 2,
                "warnings": self.warnings(),
                "audio_peak": "AF_Peak" in self.warnings(),
                # 100 % = 40 dBµV (TI 1254), read as linear in dBµV; 0 dBµV = -107 dBm at 50 ohms
                "rf_antennas": {
                    name: round(percent * 40 / 100 - 107, 1)
                    for name, percent in zip(("RF1", "RF2"), self.antenna_percents(), strict=True)
                },
                "group_channel": f"{ch.bank}.{ch.preset}" if ch.bank or ch.preset else None,
            }
        }

    # --- state changes

    def set_transmitter(self, index: int, on: bool) -> None:
        self.channel.tx_on = on
        self.publish()

    def animate(self) -> None:
        self.channel.animate(self.rng, self.tx_churn)
        self.publish()

    def forget_clients(self) -> None:
        self.push_clients.clear()

    def _signature(self) -> tuple[str, ...]:
        return tuple(self.config_line(keyword) for keyword in self.config_order)

    def _triggers(self) -> tuple[tuple[str, ...], tuple[str, bool]]:
        """What mode bits 2 (warnings) and 4 (pilot or battery) watch."""
        return tuple(self.warnings()), (self.battery_report(), self.channel.tx_on)

    def publish(self, origin: Client | None = None) -> None:
        """Report configuration changes (mode bit 1) and warning / battery changes (mode bits 2 and 4)."""
        before, after = self._reported, self._signature()
        warnings_before, battery_before = self._triggered
        warnings_now, battery_now = self._triggered = self._triggers()
        self._reported = after
        changed = [keyword for keyword, old, new in zip(self.config_order, before, after, strict=True) if old != new]
        if changed:
            self.config_index = (self.config_index + 1) % 1000
        config = "".join(self.config_line(keyword) + "\r" for keyword in changed).encode()
        wanted_bits = (SEND_ON_WARNING if warnings_before != warnings_now else 0) | (
            SEND_ON_PILOT_OR_BATTERY if battery_before != battery_now else 0
        )
        for client, push in self.push_clients.items():
            if config and push.mode & SEND_CONFIG and client != origin and not self.config_lines_lost:
                self.send(config, client)
            if push.mode & wanted_bits:
                self.send(self.cyclic(), client)

    # --- protocol

    def handle(self, data: bytes, client: Client) -> None:
        text = data.decode("ascii", errors="replace")
        if not text.endswith("\r"):
            self.send(f"1050: {ERROR_TEXT[1050]} [ {text.strip()} ]\r".encode(), client)
            return
        for line in re.split(r"\r", text):
            if line:
                self.commands.append(line)
                self._command(line, client)

    def handlers(self) -> dict[str, Callable[[list[str], str, Client], list[str]]]:
        return {
            "Push": self._push,
            "Name": self._name,
            "Frequency": self._frequency,
            "Mute": self._mute,
            "FirmwareRevision": lambda args, rest, client: [f"FirmwareRevision {FIRMWARE}"],
            "RfConfig": lambda args, rest, client: [
                " ".join(["RfConfig", *(str(number) for part in self.rf_config for number in part)])
            ],
        }

    def _command(self, line: str, client: Client) -> None:
        keyword, _, rest = line.partition(" ")
        # only what the G4 driver sends: squelch, AF out and the equalizer are reported in the config push
        # but not writable here (no driver writes them)
        handler = self.handlers().get(keyword)  # case-sensitive, as the device is
        try:
            if handler is None:
                raise CommandError(1000)
            replies = handler(rest.split(), rest, client)
        except CommandError as error:
            self.send(f"{error.code}: {ERROR_TEXT[error.code]} [ {line} ]\r".encode(), client)
            return
        self.send("".join(reply + "\r" for reply in replies).encode(), client)
        self.publish(origin=client)

    def _push(self, args: list[str], _rest: str, client: Client) -> list[str]:
        timeout, cycle, mode = _ints(args, 3)
        if not (0 <= timeout <= 300 and 0 <= cycle <= 60_000 and cycle % 100 == 0 and 0 <= mode <= 7):
            raise CommandError(1020)
        replies = [f"Push {timeout} {cycle} {mode}"]
        if mode & SEND_CONFIG:
            replies += [self.config_line(keyword) for keyword in self.config_dump]
        now = time.monotonic()
        if timeout == 0:
            self.push_clients.pop(client, None)
            if cycle:
                self.send(self.cyclic(), client)
        else:
            self.push_clients[client] = PushClient(now + timeout, cycle, mode, now)
        return replies

    def _name(self, _args: list[str], rest: str, _client: Client) -> list[str]:
        if rest:
            if len(rest) > 8 or not re.fullmatch(r"[\x20-\x7e]+", rest):
                raise CommandError(1020)
            self.channel.name = rest
        return [self.config_line("Name")]

    def _frequency(self, args: list[str], _rest: str, _client: Client) -> list[str]:
        current = self.channel.frequency_khz
        step = next((part[2] for part in self.rf_config if part[0] <= current <= part[1]), self.rf_config[0][2])
        if len(args) == 1 and args[0].startswith("#"):
            khz = current + step * _ints([args[0][1:]], 1)[0]
        elif args:
            khz = _ints(args[:1], 1)[0]
            if len(args) not in (1, 3):
                raise CommandError(1040)
        else:
            return [self.config_line("Frequency")]
        if not any(low <= khz <= high and not (khz - low) % step for low, high, step in self.rf_config):
            raise CommandError(1020)
        self.channel.frequency_khz = khz
        self.channel.bank, self.channel.preset = 0, 0  # a frequency set by value leaves the presets (TI 1254)
        return [self.config_line("Frequency")]

    def _mute(self, args: list[str], _rest: str, _client: Client) -> list[str]:
        if args:
            (value,) = _ints(args, 1)
            if value not in (0, 1):
                raise CommandError(1020)
            self.channel.muted = bool(value)
        return [self.config_line("Mute")]

    def tick(self, now: float) -> None:
        report: bytes | None = None
        for client, push in list(self.push_clients.items()):
            if now >= push.expires_at:
                del self.push_clients[client]
            elif push.cycle_ms and now >= push.next_due:
                push.next_due = now + push.cycle_ms / 1000
                report = report or self.cyclic()
                self.send(report, client)


def main(argv: list[str] | None = None) -> None:
    description = "Simulated ew G4 receivers (Media Control Protocol) on loopback."
    arguments = command_line(description, MODELS, "g4-em300").parse_args(argv)
    serve(lambda n: G4Simulator(arguments.model, port=arguments.port if n == 0 else 0, seed=n), arguments)


if __name__ == "__main__":
    main()
