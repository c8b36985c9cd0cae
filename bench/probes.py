"""What the benchmark reads from outside the hub: /proc figures, the hub's /metrics, a Mosquitto to run.

Nothing here runs inside the hub: CPU and memory come from ``/proc/<pid>``, throughput from the
Prometheus text the hub already serves, so the hub pays nothing extra for being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MOSQUITTO: Final = "/usr/sbin/mosquitto"
_TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds the process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after the command name: state is field 3, utime and stime are fields 14 and 15 of proc(5)
    return int(fields[11]) / _TICKS_PER_S, int(fields[12]) / _TICKS_PER_S


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process used so far."""
    return sum(cpu_times(pid))


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB, from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the value at or below which ``fraction`` of the values lie)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric_value(text: str, name: str) -> float | None:
    """The value of an unlabelled sample ``name`` in Prometheus text format."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


@dataclass
class Mosquitto:
    """A Mosquitto on a free loopback port, publishing its $SYS counters every second."""

    directory: Path
    port: int = 0
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        for _ in range(5):  # a free port can be taken between choosing and binding it
            self.port = free_port()
            config = self.directory / "mosquitto.conf"
            config.write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nsys_interval 1\n"
                "max_queued_messages 100000\nset_tcp_nodelay true\n"
            )
            with (self.directory / "mosquitto.log").open("ab") as log:
                self.process = await asyncio.create_subprocess_exec(
                    MOSQUITTO, "-c", str(config), stdout=log, stderr=log
                )
            for _ in range(200):
                if self.process.returncode is not None:
                    break
                if await _accepts(self.port):
                    return
                await asyncio.sleep(0.02)
            await self.stop()
        raise RuntimeError(f"mosquitto did not start; see {self.directory / 'mosquitto.log'}")

    async def stop(self) -> None:
        await stop_process(self.process)
        self.process = None


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def stop_process(process: asyncio.subprocess.Process | None, timeout_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it is not gone within ``timeout_s``."""
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
