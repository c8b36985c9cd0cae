"""The simulator's own encoding checked against the conformance corpus (tests/transcripts).

The simulator no longer borrows the driver's tables, so something independent must keep it honest: for
every GET a transcript holds, the simulator must refuse what the receiver refuses, answer what it answers,
and shape each reported parameter as the receiver does (brace field padding, digit count, bare or braced).
Hand-made fixtures (WB-TEST) and illustrative values (CO-API) pin names only, not shapes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from wmhub_shure.protocol import Framer, Framing, Report, parse
from wmhub_shure.simulator import ShureSimulator
from wmhub_shure.simulator.replay import Transcript

TRANSCRIPTS = Path(__file__).parent / "transcripts"
# transcript -> the simulated model it describes
MODELS = {
    "ulxd": "ulxd4q",
    "qlxd": "qlxd4",
    "axient": "ad4q",
    "slxd": "slxd4d",
    "slxd_plus": "slxd4qdan+",
    "psm1000": "p10t",
    "uhfr": "ur4d",
    "mxw": "mxwapt8",
    "charger": "sbc220",
}
# sources whose values are not a device's own output: their lines name parameters, not shapes
NOT_SHAPES = frozenset({"WB-TEST", "CO-API", "CO-PSM", "CO-MXW", "CO-CHG", "HUB", "ISSUE17"})


def reports(data: bytes, framing: Framing) -> list[Report]:
    found = [parse(body) for body in Framer(framing).feed(data)]
    return [report for report in found if report is not None and report.verb in ("REP", "REPORT")]


def shape(wire: str, framing: Framing) -> tuple[object, ...]:
    """How a reported value is written: a padded brace field's width, a number's digit count, or a word."""
    body = Framer(framing).feed(wire.encode("ascii"))[0].decode("ascii")
    report = parse(body.encode("ascii"))
    assert report is not None
    if report.braced:
        inner = body[body.index("{") + 1 : body.rindex("}")]
        return ("brace", len(inner) if inner != inner.rstrip() else None)
    return tuple(("digits", len(token)) if token.isdigit() else "word" for token in report.args)


def alike(ours: tuple[object, ...], theirs: tuple[object, ...]) -> bool:
    """Equal shapes; a brace field the device filled to the brim (no padding seen) fixes no width."""
    if ours[:1] == theirs[:1] == ("brace",) and None in (ours[1], theirs[1]):
        return True
    return ours == theirs


def key(report: Report) -> tuple[int | None, str, int | None]:
    return report.channel, report.param, report.index


@pytest.mark.parametrize("name", sorted(MODELS))
async def test_simulator_answers_like_the_transcript(name: str) -> None:
    transcript = Transcript.load(TRANSCRIPTS / f"{name}.txt")
    sim = ShureSimulator(MODELS[name], seed=1)
    framing = transcript.framing
    checked = 0
    for request, exchange in transcript.exchanges.items():
        if exchange.silent or not request.startswith("GET"):
            continue
        answer = reports(sim.answer(exchange.request.encode("ascii")), framing)
        refused = [r.param for r in reports("".join(exchange.replies).encode("ascii"), framing)] == ["ERR"]
        assert ([r.param for r in answer] == ["ERR"]) == refused, f"{name}: {exchange.request} -> {answer}"
        ours = {key(report): report for report in answer}
        for reply in exchange.replies:
            theirs = reports(reply.encode("ascii"), framing)
            tags = dict(transcript.lines).get(reply, [])
            if not theirs or theirs[0].is_error or set(tags) <= NOT_SHAPES:
                continue
            mine = ours.get(key(theirs[0]))
            if mine is None:
                continue  # a parameter the simulator does not model (e.g. SLX-D+ LINK_TX_BATT_MINS)
            sent = next(line for line in _lines(sim, exchange.request, framing) if _key_of(line, framing) == key(mine))
            assert alike(shape(sent, framing), shape(reply, framing)), f"{name}: simulator {sent!r}, device {reply!r}"
            checked += 1
    assert checked or name in ("ulxd", "qlxd", "psm1000", "uhfr", "mxw", "charger"), f"{name}: no shape was compared"


def _lines(sim: ShureSimulator, request: str, framing: Framing) -> list[str]:
    start, end = framing.start.decode(), framing.end.decode()
    return [f"{start} {body.decode('ascii')} {end}" for body in Framer(framing).feed(sim.answer(request.encode()))]


def _key_of(line: str, framing: Framing) -> tuple[int | None, str, int | None] | None:
    report = parse(Framer(framing).feed(line.encode("ascii"))[0])
    return None if report is None else key(report)
