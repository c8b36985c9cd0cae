"""The simulators keep their own encoding; here it is held against the transcripts of public sources.

Every read in a transcript is sent to the simulator of that family over loopback, and the simulator's
answer must have the transcript's shape: the same addresses (SSCv1), keywords and field counts (MCP) or
resource fields (SSCv2), with values of the same JSON kind. Values differ (the simulator's state is its
own); shapes may not.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from wmhub_sennheiser.simulator.g4 import G4Simulator
from wmhub_sennheiser.simulator.iem import IemG4Simulator
from wmhub_sennheiser.simulator.replay import Transcript, load
from wmhub_sennheiser.simulator.ssc1 import Ssc1Simulator
from wmhub_sennheiser.simulator.ssc2 import Ssc2Simulator
from wmhub_sennheiser.simulator.ssc2_ewdx import EwdxSsc2Simulator
from wmhub_sennheiser.testing import UdpPeer

CORPUS = Path(__file__).parent / "transcripts"


def kind(value: Any) -> str:
    """The JSON kind of a value, with the kinds of a list's items (a list of strings is not a list of lists)."""
    if isinstance(value, bool) or value is None:
        return repr(value) if value is None else "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "list of " + ("/".join(sorted({kind(item) for item in value})) or "anything")
    return type(value).__name__


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        found: dict[str, Any] = {}
        for key, value in node.items():
            found.update(leaves(value, f"{prefix}/{key}"))
        return found
    return {prefix: node}


def error_codes(message: dict[str, Any]) -> dict[str, int]:
    """Address -> SSC error code of a message's ``osc/error`` tree."""
    trees = (message.get("osc") or {}).get("error") or [{}]
    return {address: codes[0] for address, codes in leaves(trees[0]).items() if isinstance(codes, list) and codes}


def same_kind(simulated: Any, transcribed: Any) -> bool:
    if kind(transcribed) == "list of anything" or kind(simulated) == "list of anything":
        return isinstance(simulated, list) and isinstance(transcribed, list)
    return kind(simulated) == kind(transcribed)


def reads(transcript: Transcript) -> list[tuple[Any, Any]]:
    """The transcript's plain reads (every leaf null) with the replies they got."""
    found = []
    for exchange in transcript.exchanges:
        request = json.loads(exchange.request)
        if not exchange.silent and "osc" not in request and all(v is None for v in leaves(request).values()):
            found.append((request, json.loads(exchange.replies[0])))
    return found


@pytest.mark.parametrize(
    ("stem", "model"), [("ewdx-em2", "ewdx-em2"), ("em6000", "em6000"), ("sldw", "sldw"), ("chg70n", "chg70n")]
)
async def test_ssc1_simulator_answers_every_transcript_read_in_its_shape(stem: str, model: str) -> None:
    transcript = load(CORPUS / f"{stem}.txt")
    async with Ssc1Simulator(model, tick_s=0) as simulator:
        if len(simulator.channels) > 1:
            simulator.set_transmitter(2, False)  # the transcripts' second transmitter is off
        if model == "chg70n":
            simulator.device.channels[0].rx_warnings = ["BatteryTempOutOfRange"]  # as the transcript's first bay
        async with UdpPeer(simulator.port) as peer:
            for xid, (request, reply) in enumerate(reads(transcript), start=1):
                peer.send(json.dumps({**request, "osc": {"xid": xid}}).encode())
                while (answer := json.loads(await peer.receive())).get("osc", {}).get("xid") != xid:
                    pass  # a notification, not our answer
                expected, got = leaves(reply), leaves(answer)
                errors, got_errors = error_codes(reply), error_codes(answer)
                for address, value in expected.items():
                    if address.startswith("/osc"):
                        continue
                    assert address in got, f"{stem}: the simulator does not answer {address}"
                    assert same_kind(got[address], value), f"{stem} {address}: {got[address]!r} vs {value!r}"
                for address, code in errors.items():
                    assert got_errors.get(address) == code, f"{stem} {address}: error {code}"


def mcp_shape(data: bytes) -> list[tuple[str, int | None]]:
    """Keyword and field count of each line; Name and Msg carry free text, so only their keyword counts."""
    lines = [line.split(" ") for line in data.decode("ascii").split("\r") if line]
    return [(line[0], None if line[0] in ("Name", "Msg") else len(line)) for line in lines]


@pytest.mark.parametrize(
    ("stem", "simulator_class", "push_line"),
    [("g4-em", G4Simulator, "Push 250 200 7"), ("iem-g4", IemG4Simulator, "Push 250 200 3")],
)
async def test_mcp_simulators_answer_in_the_shape_of_ti_1254(
    stem: str, simulator_class: type[G4Simulator], push_line: str
) -> None:
    transcript = load(CORPUS / f"{stem}.txt")
    async with simulator_class(tick_s=0) as simulator, UdpPeer(simulator.port) as peer:
        for exchange in transcript.exchanges:
            if exchange.request.startswith(("Push", "Name ", "Mute ")):
                continue  # keep-alives and writes: compared below, or they change the state
            peer.send(exchange.request.encode() + b"\r")
            assert mcp_shape(await peer.receive()) == mcp_shape(exchange.replies[0].encode()), exchange.request
        peer.send(b"Push 5 450 1\r")
        refused = (await peer.receive()).decode()
        assert refused.replace(" ", "") == "1020:Valueoutofrange[Push54501]\r"  # TI 1254 p.12, spacing aside
        push = transcript.exchange(push_line)
        assert push is not None
        assert mcp_shape(simulator.cyclic()) == mcp_shape(push.pushed[-1].encode())
        peer.discard_received()
        peer.send(push_line.encode() + b"\r")
        assert mcp_shape(await peer.receive()) == mcp_shape((push.replies[0] + push.pushed[0]).encode())


# Spectera's enumerations (companion-module-sennheiser-spectera src/types.ts): the simulator must use them
SPECTERA_VALUES = {
    ("/api/device/state", "state"): {"Initializing", "Normal", "FactoryReset", "Standby", "Cooldown", "Warmup"},
    ("/api/mts/paired/all", "state"): {"Connected", "Disconnected", "Syncing", "Sleeping", "Updating"},
    ("/api/mts/paired/all", "type"): {"Unknown", "SEK", "SKM"},
    ("/api/rf/channels", "rfState"): {"RfActive", "RfMuted"},
}


async def test_ssc2_simulator_serves_the_transcript_resources_in_spectera_shapes() -> None:
    transcript = load(CORPUS / "spectera.txt")
    async with Ssc2Simulator(tick_s=0) as simulator:
        credentials = f"{transcript.header['user']}:{simulator.password}".encode()
        auth = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
        connector = aiohttp.TCPConnector(ssl=False)
        async with aiohttp.ClientSession(f"https://127.0.0.1:{simulator.port}", connector=connector) as http:
            for exchange in transcript.exchanges:
                method, _, path = exchange.request.partition(" ")
                status, _, body = exchange.replies[0].partition(" ")
                if method != "GET" or status != "200" or not body.startswith(("{", "[")):
                    continue
                async with http.get(path, headers=auth) as response:
                    assert response.status == 200, path
                    served = await response.json()
                wanted = json.loads(body)
                if isinstance(wanted, list):  # a collection: its first member stands for all
                    wanted, served = wanted[0], served[0]
                for field, value in wanted.items():
                    if field in served:
                        assert same_kind(served[field], value), f"{path} {field}: {served[field]!r} vs {value!r}"
                    if (path, field) in SPECTERA_VALUES:
                        assert served.get(field) in SPECTERA_VALUES[(path, field)], f"{path} {field}"


# the EW-DX OpenAPI's enumerations (companion-module-sennheiser-ewdx api_docs.json @a7b7243)
EWDX_VALUES = {
    ("/api/device/identity", "product"): {"EWDX2CHS", "EWDX2CHDS", "EWDX4CHDS"},
    ("/api/device/state", "state"): {"Normal", "Identifying", "FirmwareUpdate", "Busy"},
    ("/api/transmitters/0", "type"): {"EW_D_SKP", "EW_D_SK", "EW_D_SKM_S", "EW_DX_SK", "EW_DX_SK_3_PIN"}
    | {"EW_DX_SKM", "EW_DX_SKM_S", "EW_DX_TS_3_PIN", "EW_DX_TS_5_PIN"},
    ("/api/transmitters/0/battery", "type"): {"Battery", "PrimaryCell", "NoBattery"},
}


async def test_ewdx_ssc2_simulator_answers_every_transcript_read_with_its_status_and_shape() -> None:
    transcript = load(CORPUS / "ewdx-ssc2.txt")
    simulator = EwdxSsc2Simulator(tick_s=0)
    async with simulator:
        simulator.set_transmitter(2, on=False)  # as in the transcript: no transmitter on channelId 1
        credentials = f"{transcript.header['user']}:{simulator.password}".encode()
        auth = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
        connector = aiohttp.TCPConnector(ssl=False)
        async with aiohttp.ClientSession(f"https://127.0.0.1:{simulator.port}", connector=connector) as http:
            compared = 0
            for exchange in transcript.exchanges:
                method, _, path = exchange.request.partition(" ")
                status, _, body = exchange.replies[0].partition(" ")
                if method != "GET" or not body.startswith(("{", "[")):
                    continue
                async with http.get(path, headers=auth) as response:
                    assert response.status == int(status), path
                    served = await response.json()
                if status != "200":
                    continue
                wanted = json.loads(body)
                if isinstance(wanted, list):
                    assert isinstance(served, list) and all(isinstance(item, str) for item in served), path
                    continue
                compared += 1
                for field, value in wanted.items():
                    assert field in served, f"{path} lacks {field}"
                    assert same_kind(served[field], value), f"{path} {field}: {served[field]!r} vs {value!r}"
                    if (path, field) in EWDX_VALUES:
                        assert served[field] in EWDX_VALUES[(path, field)], f"{path} {field}"
            assert compared >= 15
