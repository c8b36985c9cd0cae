"""``wmhub run`` under a low open-file limit (``ulimit -n 64``, soft and hard, so the hub cannot raise it):
receivers beyond what the limit leaves room for wait their turn, not connected, named in ``/api/health``,
with one warning naming the limit; the web server keeps answering so the admin can remove devices, and a
device removed lets a waiting one connect. A web server that cannot listen says where and why."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub.descriptors import DESCRIPTOR_RESERVE, DescriptorBudget
from hub.testing import eventually
from tests.mosquitto import free_port
from tests.test_faults_plugins import stranger_distribution
from tests.test_faults_startup import simulated_receivers

LIMIT = 64
TOKEN = "fd-limit-test-token-0123456789"
DEADLINE_S = 45.0  # bounded: far above the seconds a hub needs to connect 60 loopback simulators


def low_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec: soft and hard, so the hub cannot raise it
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@dataclass
class LimitedHub:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=5) as r:
                text = r.read().decode()
                return r.status, json.loads(text) if r.headers.get_content_type() == "application/json" else text
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def health(self) -> dict[str, Any]:
        status, body = self.request("GET", "/api/health")
        assert status == 200, (status, body)
        assert isinstance(body, dict)
        return body

    def warnings(self) -> list[str]:
        """The log's warnings so far (a line the hub is still writing is left for the next look)."""
        said = []
        for line in self.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") == "warning":
                said.append(entry["message"])
        return said

    def waiting_said(self, limit: int = LIMIT) -> list[str]:
        """The warnings naming the open-file limit and the devices waiting, once there is one."""
        return [message for message in self.warnings() if f"open-file limit ({limit})" in message and "wait" in message]

    def until(self, check: Callable[[], Any], what: str) -> Any:
        """``check()``'s first true answer; the hub exiting or the deadline passing fails the test. A request the
        hub refuses (reset, timed out) counts as not yet: the deadline then says what was not reached."""
        deadline = time.monotonic() + DEADLINE_S
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                said = self.log.read_text()[-1500:]
                pytest.fail(f"the hub exited with {self.process.returncode} waiting for {what}: {said}")
            try:
                if result := check():
                    return result
            except (OSError, AssertionError) as exc:
                last = exc
            time.sleep(0.2)
        pytest.fail(f"not within {DEADLINE_S} s: {what} (last: {last!r})")


@contextmanager
def hub_with_limit(
    tmp_path: Path, limit: int, devices: list[str], environment: dict[str, str] | None = None
) -> Iterator[LimitedHub]:
    port = free_port()
    command = [sys.executable, "-m", "hub.cli", "run", "--data-dir", str(tmp_path / "data"), "--mqtt", "off"]
    command += ["--http", f"127.0.0.1:{port}"]
    for url in devices:
        command += ["--device", url]
    environment = {**(environment or os.environ), "WMHUB_DISCOVERY__ENABLED": "false", "WMHUB_HTTP__TOKEN": TOKEN}
    log = tmp_path / "hub.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=environment, stdout=out, stderr=out, preexec_fn=low_limit(limit))
    try:
        yield LimitedHub(port, process, log)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def simulated_ssc2_receivers(count: int) -> Iterator[list[str]]:
    """``count`` Sennheiser SSCv2 simulators (HTTPS and an event stream each) in a child process: their URLs, each
    with its password and its certificate pinned."""
    command = [sys.executable, "-m", "wmhub_sennheiser.simulator", "--protocol", "ssc2", "--count", str(count)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield [process.stdout.readline().strip() for _ in range(count)]
    finally:
        process.terminate()
        process.wait(10)


def waiting(entry: dict[str, Any]) -> bool:
    return not entry["connected"] and "open-file limit" in (entry["last_error"] or "")


def settled(hub: LimitedHub, count: int) -> dict[str, Any] | None:
    """The health once each of ``count`` devices is either connected or waiting for a descriptor."""
    health = hub.health()
    connections = health["connections"]
    if len(connections) == count and all(entry["connected"] or waiting(entry) for entry in connections):
        return health
    return None


def test_more_receivers_than_the_limit_holds_wait_their_turn_and_the_board_answers(tmp_path: Path) -> None:
    """F3 (environment audit): 60 receivers under ``ulimit -n 64`` took every descriptor before the web server
    listened; the hub warned "at most about -36 receivers" and exited 1 with "list index out of range"."""
    with simulated_receivers(60) as urls, hub_with_limit(tmp_path, LIMIT, urls) as hub:
        health = hub.until(lambda: settled(hub, 60), "every receiver connected or waiting for a descriptor")
        connected = [entry for entry in health["connections"] if entry["connected"]]
        held = [entry for entry in health["connections"] if waiting(entry)]
        assert connected and held, (len(connected), len(held))
        assert len(connected) + len(held) == 60
        # the web server keeps its descriptors: the board and API answer
        assert [hub.request("GET", "/api/health")[0] for _ in range(3)] == [200, 200, 200]
        assert hub.request("GET", "/")[0] == 200
        assert hub.process.poll() is None
        held_lines = hub.until(hub.waiting_said, "a warning naming the limit and the devices waiting")
        messages = hub.warnings()
    start_up = [message for message in messages if message.startswith("open-file limit is 64:")]
    assert len(start_up) == 1, messages
    assert "-" not in start_up[0].split("at most about")[-1].split()[0], start_up[0]  # never a negative count
    estimate = int(start_up[0].split("at most about ")[1].split()[0])
    assert 0 < estimate <= LIMIT
    assert "60 are configured" in start_up[0], start_up[0]
    # one warning naming the limit and how many wait
    assert len(held_lines) == 1, messages
    # one descriptor each (a Shure receiver's one socket): the room is the count connected
    room = f"room for {len(connected)} descriptors of device connections, which {len(connected)} connection(s) hold"
    assert f"{room}: {len(held)} device(s) wait" in held_lines[0], held_lines


def test_receivers_added_beyond_the_limit_wait_and_one_removed_lets_the_next_connect(tmp_path: Path) -> None:
    """F4 (environment audit): 40 receivers added over REST beyond ``ulimit -n 64`` took every descriptor; from
    then on every HTTP connection was reset, so the board could not remove them, and the log said nothing."""
    with simulated_receivers(70) as urls, hub_with_limit(tmp_path, LIMIT, urls[:10]) as hub:
        hub.until(lambda: settled(hub, 10) and all(e["connected"] for e in hub.health()["connections"]), "10 up")
        for url in urls[10:]:
            assert hub.request("POST", "/api/v1/devices", {"url": url})[0] == 201
        health = hub.until(lambda: settled(hub, 70), "every receiver connected or waiting for a descriptor")
        assert [hub.request("GET", "/api/health")[0] for _ in range(3)] == [200, 200, 200]
        connected = [entry for entry in health["connections"] if entry["connected"]]
        held = [entry for entry in health["connections"] if waiting(entry)]
        assert connected and held and len(connected) + len(held) == 70, (len(connected), len(held))
        held_lines = hub.until(hub.waiting_said, "a warning naming the limit and the devices waiting")
        assert len(held_lines) == 1, held_lines
        assert f"room for {len(connected)} descriptors of device connections" in held_lines[0], held_lines
        # the admin removes five connected receivers through the API: five waiting ones take their descriptors
        for entry in connected[:5]:
            assert hub.request("DELETE", f"/api/v1/devices/{urllib.parse.quote(entry['device_id'])}")[0] == 204

        def five_more() -> dict[str, Any] | None:
            now = settled(hub, 65)
            if now is None or sum(entry["connected"] for entry in now["connections"]) != len(connected):
                return None
            return now

        after = hub.until(five_more, "five waiting receivers connected in place of the five removed")
        assert sum(waiting(entry) for entry in after["connections"]) == len(held) - 5
        assert len(hub.waiting_said()) == 1  # said once, not again for each device added or waking
        assert hub.process.poll() is None


def test_receivers_that_hold_several_descriptors_are_counted_so_and_the_rest_wait(tmp_path: Path) -> None:
    """Review 14: an SSCv2 receiver holds its event stream and a request connection, but the budget counted one
    descriptor each. 30 of them under ``ulimit -n 64`` were all let connect (the start said "at most about 32"):
    devices failed with "Too many open files" and flapped, and ``/api/health`` stopped answering."""
    count = 30
    with simulated_ssc2_receivers(count) as urls, hub_with_limit(tmp_path, LIMIT, urls) as hub:
        health = hub.until(lambda: settled(hub, count), "every receiver connected or waiting for descriptors")
        connected = [entry for entry in health["connections"] if entry["connected"]]
        held = [entry for entry in health["connections"] if waiting(entry)]
        assert connected and held and len(connected) + len(held) == count, (len(connected), len(held))
        said = hub.until(hub.waiting_said, "a warning naming the limit and the devices waiting")
        room = int(said[0].split("leaves room for ")[1].split()[0])
        assert len(connected) == room // 2, (said, len(connected))  # two descriptors each
        assert f"which {len(connected)} connection(s) hold: {len(held)} device(s) wait" in said[0], said
        assert all("it connects in turn when 2 are free" in entry["last_error"] for entry in held), held
        # through a state poll of every connected receiver (every 5 s) the API answers and none fails
        until = time.monotonic() + 6.0
        while time.monotonic() < until:
            now = settled(hub, count)
            assert now is not None, hub.health()
            assert sum(entry["connected"] for entry in now["connections"]) == len(connected)
            time.sleep(0.2)
        # two connected receivers removed: their four descriptors let two waiting ones connect
        for entry in connected[:2]:
            assert hub.request("DELETE", f"/api/v1/devices/{urllib.parse.quote(entry['device_id'])}")[0] == 204

        def two_more() -> dict[str, Any] | None:
            now = settled(hub, count - 2)
            if now is None or sum(entry["connected"] for entry in now["connections"]) != len(connected):
                return None
            return now

        after = hub.until(two_more, "two waiting receivers connected in place of the two removed")
        assert sum(waiting(entry) for entry in after["connections"]) == len(held) - 2
        assert hub.request("GET", "/")[0] == 200
        start_up = [message for message in hub.warnings() if message.startswith("open-file limit is 64:")]
        log = hub.log.read_text()
    assert "Too many open files" not in log and "EMFILE" not in log
    assert len(start_up) == 1, start_up
    assert "about 16 if they are sennheiser-ssc2:// (2 descriptors each)" in start_up[0], start_up
    assert f"{count} are configured, about 16 fit at once, the others wait their turn" in start_up[0], start_up


GREEDY_PLUGIN = """
import asyncio

from hub import hookimpl
from hub.drivers import Driver
from hub.hookspecs import DriverSpec


class Greedy(Driver):
    async def connect(self):
        self.sink.identify(unique_id=self.endpoint.host, family="greedy", model="G-1", channel_count=1)

    async def run(self):
        await asyncio.Event().wait()

    async def close(self):
        pass


@hookimpl
def register_drivers(register):
    register(DriverSpec(scheme="greedy", vendor="greedy", families=("greedy",), factory=Greedy, descriptors=40))
"""


def test_a_receiver_declaring_more_descriptors_than_the_limit_leaves_connects_alone(tmp_path: Path) -> None:
    """A third party's driver that declares more descriptors per connection (40) than ``ulimit -n 64`` leaves
    for all device connections (32) neither waits forever nor is let in beside others: it takes the whole room
    and connects alone, said once; the next waits until it is removed."""
    environment = stranger_distribution(tmp_path, "greedy", GREEDY_PLUGIN)
    with hub_with_limit(tmp_path, LIMIT, ["greedy://first:1", "greedy://second:1"], environment) as hub:
        health = hub.until(lambda: settled(hub, 2), "one receiver connected, the other waiting")
        connected = [entry for entry in health["connections"] if entry["connected"]]
        held = [entry for entry in health["connections"] if waiting(entry)]
        assert len(connected) == 1 and len(held) == 1, health
        assert "leaves room for 32 descriptors of device connections" in held[0]["last_error"], held
        alone = "fewer than the 40 one connection may hold: such a device connects only when no other device holds"
        assert len([message for message in hub.warnings() if alone in message]) == 1, hub.warnings()
        assert hub.request("DELETE", f"/api/v1/devices/{urllib.parse.quote(connected[0]['device_id'])}")[0] == 204
        after = hub.until(
            lambda: (now := settled(hub, 1)) is not None and now["connections"][0]["connected"] and now,
            "the waiting receiver connected once the other was removed",
        )
        assert after["connections"][0]["url"] == held[0]["url"], (after, held)


def test_a_limit_too_low_for_any_receiver_says_so_in_one_sentence_and_the_board_answers(tmp_path: Path) -> None:
    """``ulimit -n 32``: what the hub keeps for itself leaves no receiver a descriptor; it says so at start (no
    negative count), the receivers wait, the board answers."""
    with simulated_receivers(2) as urls, hub_with_limit(tmp_path, 32, urls) as hub:
        health = hub.until(lambda: settled(hub, 2), "both receivers waiting for a descriptor")
        assert not any(entry["connected"] for entry in health["connections"])
        said = hub.until(lambda: hub.waiting_said(32), "a warning naming the limit and the devices waiting")
        assert "leaves no room for device connections: 2 device(s) wait" in said[0], said
        start_up = [message for message in hub.warnings() if message.startswith("open-file limit is 32:")]
    assert len(start_up) == 1, start_up
    assert "too low for any receiver connection" in start_up[0] and "at most" not in start_up[0], start_up


LISTEN_WITHOUT_DESCRIPTORS = """
import asyncio, os, resource, sys
from aiohttp import web
from hub.web.guard import ConnectionLimits, GuardedSite

async def main():
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", int(sys.argv[1]), ConnectionLimits(8, 5.0))
    import encodings.idna  # noqa: F401 (what resolving the host imports, loaded while descriptors are left)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    try:
        await site.start()
    except Exception as exc:
        print(type(exc).__name__, exc)
    else:
        print("listening on", runner.addresses)

{runner}
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_web_server_that_cannot_listen_names_the_address_and_the_open_file_limit(loop: str) -> None:
    """What made "the hub stopped: list index out of range": with no descriptor left, the site started without
    a socket (asyncio skips a socket it cannot create) and the hub read a port from an empty list."""
    runner = "asyncio.run(main())" if loop == "asyncio" else "import uvloop; uvloop.run(main())"
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-c", LISTEN_WITHOUT_DESCRIPTORS.replace("{runner}", runner), str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    said = done.stdout.strip()
    assert said.startswith("WebListenError cannot listen on 127.0.0.1:"), said
    assert f":{port}:" in said and "open-file limit (64)" in said, said


async def test_a_device_removed_while_waiting_as_another_closes_leaves_its_turn_to_the_next() -> None:
    """An outside review: a device waiting for descriptors removed in the same loop turn as another closed its
    connection. The close raised (its supervisor died: that device never reconnected), the removal was lost
    (its DELETE never returned) and the descriptor leaked, so a device added later waited for ever."""
    budget = DescriptorBudget(limit=lambda: DESCRIPTOR_RESERVE + 1, in_use=lambda: 0)  # room for one connection
    holding = await budget.acquire(lambda reason: None)
    removed = asyncio.create_task(budget.acquire(lambda reason: None))
    behind = asyncio.create_task(budget.acquire(lambda reason: None))
    await eventually(lambda: budget.waiting == 2, what="both devices to wait their turn")
    removed.cancel()
    budget.release(holding)  # the close, before the removed device's task has run
    assert (await asyncio.gather(removed, return_exceptions=True))[0].__class__ is asyncio.CancelledError
    assert await behind == 1, "the device after it connects"
    budget.release(1)
    assert (budget.held, budget.holders, budget.waiting) == (0, 0, 0)
    assert await asyncio.wait_for(budget.acquire(lambda reason: None), 5) == 1, "a device added later connects"
