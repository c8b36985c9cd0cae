"""A control flood: commands beyond a device's rate are refused with a clear error and never reach it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from wmhub_shure.simulator import ShureSimulator

from hub.clock import SimulatedClock
from hub.model import Command, CommandKind
from hub.testing import eventually
from tests.fault_harness import TOKEN, Api, device_of, hub_config, is_online, running_hub
from tests.reliability_report import FaultResult, record_check

RATE_PER_S = 5.0
FLOOD = 60


def names_set(sim: ShureSimulator) -> int:
    return sum(line.startswith("SET 1 CHAN_NAME") for line in sim.received)


async def test_control_flood_is_refused_before_the_device(tmp_path: Path) -> None:
    async with ShureSimulator("ulxd4d") as sim:
        config = hub_config(tmp_path, [sim.url], control_rate_per_s=RATE_PER_S)
        clock = SimulatedClock()  # the rate limit refills only when the test moves it
        async with running_hub(config, plugins="shure", clock=clock) as hub, Api(hub) as api:
            await eventually(lambda: is_online(hub, sim.url), 10, "device online")
            device_id = device_of(hub, sim.url).id  # type: ignore[union-attr]
            before = names_set(sim)
            started = time.monotonic()
            results = await asyncio.gather(
                *(
                    hub.apply(Command(device_id=device_id, channel=1, kind=CommandKind.NAME, value=f"F{n}"), "test")
                    for n in range(FLOOD)
                )
            )
            flood_s = time.monotonic() - started
            accepted = [result for result in results if result.ok]
            refused = [result for result in results if not result.ok]
            reached = names_set(sim) - before
            status, body = await api.post(
                f"/api/v1/channels/{device_id}:1/commands", {"kind": "name", "value": "REST"}, TOKEN
            )
            # a second later the device takes commands again
            clock.advance(1.0)
            later = await hub.apply(Command(device_id=device_id, channel=1, kind=CommandKind.NAME, value="CALM"), "t")
        FaultResult(
            f"Control flood ({FLOOD} commands at once to one receiver, limit {RATE_PER_S:g}/s)",
            None,
            None,
            0,
            0,
            notes=(
                f"accepted {len(accepted)}, refused {len(refused)} with code rate_limited in {flood_s:.2f} s; "
                f"SETs that reached the receiver: {reached} (= accepted); REST answers {status} while flooded; "
                f"a command 1 s later: {'ok' if later.ok else later.code}"
            ),
        ).record()
        record_check(
            "Control",
            f"per-device rate limit ({RATE_PER_S:g}/s, burst {RATE_PER_S:g}): a flood of {FLOOD} commands",
            f"{len(refused)} refused before the device (HTTP {status} for one more over REST), {reached} sent",
        )
        assert refused and all(result.code == "rate_limited" and result.error for result in refused)
        assert len(accepted) == RATE_PER_S and reached == len(accepted), "no refill while the clock stood still"
        assert status == 429 and body["code"] == "rate_limited"
        assert later.ok
