"""`wmhub discover` finds a device announcing itself over mDNS and prints the URL to add it by."""

import asyncio
import contextlib
import json
import os
import socket
import sys
from pathlib import Path

import pytest
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator

from hub.testing import eventually


async def test_discover_prints_an_announced_receiver_with_its_srv_port() -> None:
    async with Ssc1Simulator("ewdx-em4", tick_s=0, advertise=True) as simulator:
        scan = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "discover", "--seconds", "4", "--json", "--interface", "127.0.0.1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(scan.communicate(), 60)
    assert scan.returncode == 0, stderr.decode()
    found = {candidate["url"]: candidate for candidate in json.loads(stdout)}
    assert simulator.url in found
    assert found[simulator.url]["model"] == "EW-DX EM 4" and found[simulator.url]["vendor"] == "sennheiser"


async def wmhub(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", *args, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.parametrize("seconds", ["-1", "0", "nan", "inf", "1e-9", "soon"])
async def test_discover_refuses_a_duration_it_cannot_look_for_in_one_line(seconds: str) -> None:
    status, stdout, stderr = await wmhub("discover", f"--seconds={seconds}")
    assert status == 2 and stdout == ""
    assert stderr.count("\n") == 1 and "from 1 to 86400" in stderr, stderr


async def test_discover_refuses_an_interface_not_of_this_machine_in_one_line() -> None:
    status, stdout, stderr = await wmhub("discover", "--interface", "10.9.9.9", "--seconds", "1")
    assert (status, stdout) == (2, "")
    assert (
        stderr
        == "wmhub discover: --interface: 10.9.9.9 is not an address of this machine (Cannot assign requested address)\n"
    )
    status, _, stderr = await wmhub("discover", "--seconds", "1", env={"WMHUB_DISCOVERY__INTERFACES": "10.9.9.9"})
    assert (
        status == 2
        and stderr.startswith(
            "wmhub discover: environment (WMHUB_DISCOVERY__INTERFACES): discovery.interfaces: 10.9.9.9 is not"
        )
        and stderr.count("\n") == 1
    )


async def test_discover_refuses_the_unspecified_address_as_an_interface() -> None:
    """An outside audit: 0.0.0.0 (and multicast, broadcast) passed the check, as Linux binds them."""
    status, stdout, stderr = await wmhub("discover", "--interface", "0.0.0.0", "--seconds", "1")
    assert (status, stdout) == (2, "") and stderr.count("\n") == 1, stderr
    assert stderr.startswith("wmhub discover: --interface: 0.0.0.0 is not an address of this machine's interfaces")


@pytest.mark.parametrize("command", ["discover", "run"])
async def test_an_ipv6_interface_is_refused_as_mdns_listens_on_ipv4(command: str, tmp_path: Path) -> None:
    env = {"WMHUB_DISCOVERY__INTERFACES": "::1", "WMHUB_DATA_DIR": str(tmp_path), "WMHUB_MQTT__URL": "off"}
    status, _, stderr = await wmhub(command, env=env)
    assert status == 2 and stderr.count("\n") == 1
    assert "discovery.interfaces: ::1 is IPv6: mDNS listens on IPv4 addresses only" in stderr, stderr
    status, _, stderr = await wmhub("discover", "--interface", "::1")
    assert status == 2 and "::1 is IPv6: mDNS listens on IPv4 addresses only" in stderr


def udp_sockets_of(pid: int) -> list[str]:
    """The local addresses (``ADDRESS:PORT``) of the UDP sockets process ``pid`` holds, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # a descriptor closed while looked at
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = []
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[9] in inodes:
            address, port = fields[1].split(":")
            found.append(f"{socket.inet_ntoa(bytes.fromhex(address)[::-1])}:{int(port, 16)}")
    return found


async def test_an_interface_given_limits_the_shure_slp_listener_too() -> None:
    """An outside audit: --interface (and discovery.interfaces) limited mDNS only; the Shure SLP listener took
    announcements from every network, bound to 0.0.0.0:8427 and a member of its group on the default interface.
    Now it is bound to the group's address and joins it on the given interfaces alone."""
    scan = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "discover", "--seconds", "20", "--interface", "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        slp = await eventually(
            lambda: [address for address in udp_sockets_of(scan.pid) if address.endswith(":8427")],
            20,  # the child's start alone can take seconds on a loaded machine
            what="the SLP listener's socket",
        )
    finally:
        _, stderr = await asyncio.wait_for(scan.communicate(), 60)
    assert scan.returncode == 0, stderr.decode()
    assert slp == ["239.255.254.253:8427"]
