"""REST API v1 for frequency coordination (#19): the live plan, clean frequencies, declared carriers and
exclusions. Present only with a venue store (the plan's declared carriers and exclusions live there):
the plan is :class:`hub.service.FrequencyService`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from hub.frequency import Band, Candidate, Carrier, finding_view
from hub.model import Command, CommandKind, CommandResult
from hub.records import DeclaredCarrier, FrequencyExclusion
from hub.service import FrequencyService, HubService
from hub.web.api import HUB_KEY, SOURCE, channel_id, command_error, find_channel
from hub.web.routing import ApiError, Handler, Operation, json_response, parse_body, path_number
from hub.web.schemas import CommandOutcome, Strict
from hub.web.venue import NO_CONTENT, store_errors, venue

MHZ = Field(ge=1.0, le=10_000.0, description="MHz")


class BandView(Strict):
    low_mhz: float
    high_mhz: float
    step_khz: float
    whole_range: bool = Field(
        default=False,
        description="only the limits the plugin accepts for the family, wider than the receiver's own band",
    )


class CarrierView(Strict):
    id: str = Field(description="<device_id>:<index>[+<index>...][/2] or declared:<n>")
    label: str
    frequency_mhz: float
    state: Literal["active", "planned"]
    bandwidth_khz: float
    family: str | None
    device_id: str | None
    channels: list[int]
    declared_id: int | None
    band: BandView | None


class FindingView(Strict):
    kind: Literal["intermod", "spacing", "exclusion", "out_of_band"]
    product: str = Field(description="2f1-f2 | f1+f2-f3 | 3f1-2f2 | 4f1-3f2 | spacing | exclusion | out_of_band")
    order: int | None
    severity: Literal["alert", "warning"] = Field(description="alert: every carrier involved is on air")
    victim: str
    victim_label: str
    sources: list[str]
    source_labels: list[str]
    product_mhz: float | None
    offset_khz: float = Field(description="product (or other carrier) minus victim")
    guard_khz: float
    count: int = Field(description="products of this kind and severity reaching the victim; this is the closest")


class FrequencyPlanView(Strict):
    carriers: list[CarrierView]
    findings: list[FindingView]
    declared: list[DeclaredCarrier]
    exclusions: list[FrequencyExclusion]
    alerts: int
    warnings: int
    checked_at: float | None
    checked: bool = Field(
        description="false until this run's first check (it waits up to 15 s for the devices to report) and while "
        "the plan has more carriers than frequency.max_live_carriers: no live check runs"
    )
    checking: bool = Field(
        default=False,
        description="a check runs (a plan of 64 carriers or more is checked in a worker thread): the carriers and "
        "findings are the last check's until it ends, and checked_at changes when it has",
    )
    settings: dict[str, Any]


class SuggestBody(Strict):
    channel: str = Field(min_length=3, max_length=200, description="'<device_id>:<index>'")
    low_mhz: float | None = Field(default=None, ge=1.0, le=10_000.0, description="the band, if the device's is unknown")
    high_mhz: float | None = Field(default=None, ge=1.0, le=10_000.0)
    step_khz: float | None = Field(default=None, ge=1.0, le=10_000.0, description="tuning step; default the band's")
    range_low_mhz: float | None = Field(default=None, ge=1.0, le=10_000.0, description="search only from here")
    range_high_mhz: float | None = Field(default=None, ge=1.0, le=10_000.0, description="search only up to here")
    count: int = Field(default=5, ge=1, le=50)
    apply: bool = Field(default=False, description="tune the channel to the best frequency (as a command)")


class FrequencyCandidateView(Strict):
    frequency_mhz: float
    margin_khz: float = Field(description="room beyond every guard to the nearest problem")


class ChannelTuning(Strict):
    channel: str
    frequency_mhz: float
    outcome: CommandOutcome | None = Field(
        default=None,
        description="with apply: the command's outcome (code not_sent: not sent, another channel's was refused "
        "or failed first)",
    )


class SuggestView(Strict):
    channel: str
    current_mhz: float
    band: BandView
    candidates: list[FrequencyCandidateView]
    applied: CommandOutcome | None = Field(
        default=None, description="with apply: the outcome (the first that failed, where a channel's did)"
    )
    tuned: list[ChannelTuning] = Field(
        default_factory=list, description="with apply: every channel of the carrier, each with its outcome"
    )


class CoordinateBody(Strict):
    count: int | None = Field(default=None, ge=1, le=48, description="default: one per channel given")
    channels: list[str] = Field(
        default_factory=list, max_length=48, description="'<device_id>:<index>' to retune: the group itself"
    )
    apply: bool = Field(default=False, description="tune each channel to its frequency (as commands)")
    backups: int = Field(default=0, ge=0, le=47)
    low_mhz: float = MHZ
    high_mhz: float = MHZ
    step_khz: float | None = Field(
        default=None, ge=1.0, le=10_000.0, description="default: each channel's tuning step (25 kHz without channels)"
    )
    family: str | None = Field(
        default=None, max_length=40, description="selects the guard bands (a channel's own family wins)"
    )


class CoordinationView(Strict):
    frequencies: list[FrequencyCandidateView]
    backups: list[FrequencyCandidateView]
    band: BandView
    fixed_carriers: int
    notes: list[str]
    plan: list[ChannelTuning] = Field(default_factory=list, description="the channels given, each with its frequency")


class DeclaredCarrierBody(Strict):
    label: str = Field(min_length=1, max_length=100)
    frequency_mhz: float = MHZ
    bandwidth_khz: float = Field(default=0.0, ge=0.0, le=100_000.0)
    active: bool = True
    family: str | None = Field(default=None, max_length=40)


class ExclusionBody(Strict):
    label: str = Field(default="", max_length=100)
    low_mhz: float | None = Field(default=None, ge=1.0, le=10_000.0)
    high_mhz: float | None = Field(default=None, ge=1.0, le=10_000.0)
    tv_grid: Literal["us", "eu"] | None = Field(default=None, description="us: 6 MHz, ch 14-36; eu: 8 MHz, ch 21-69")
    tv_channel: int | None = Field(default=None, ge=1, le=100)


class DeclaredCarrierList(Strict):
    items: list[DeclaredCarrier]


class ExclusionList(Strict):
    items: list[FrequencyExclusion]


def _band_view(band: Band) -> BandView:
    return BandView(low_mhz=band.low_mhz, high_mhz=band.high_mhz, step_khz=band.step_khz, whole_range=band.whole_range)


def _carrier_view(carrier: Carrier) -> CarrierView:
    return CarrierView(
        id=carrier.id,
        label=carrier.label or carrier.id,
        frequency_mhz=carrier.frequency_mhz,
        state=carrier.state.value,
        bandwidth_khz=carrier.bandwidth_khz,
        family=carrier.family,
        device_id=carrier.device_id,
        channels=list(carrier.channels),
        declared_id=carrier.declared_id,
        band=_band_view(carrier.band) if carrier.band else None,
    )


def _candidate_views(candidates: Sequence[Candidate]) -> list[FrequencyCandidateView]:
    return [FrequencyCandidateView(frequency_mhz=c.frequency_mhz, margin_khz=c.margin_khz) for c in candidates]


def _band(low: float | None, high: float | None, step: float | None) -> Band | None:
    if low is None and high is None:
        return None
    if low is None or high is None or high <= low:
        raise ApiError(422, "invalid_body", "give both low_mhz and high_mhz, low below high")
    return Band(low, high, step or 25.0)


async def frequency_plan(request: web.Request) -> web.Response:
    plan = venue(request).frequency
    plan.refresh()
    labels = plan.labels()
    findings = plan.findings
    alerts = sum(1 for finding in findings if finding.severity == "alert")
    return json_response(
        FrequencyPlanView(
            carriers=[_carrier_view(carrier) for carrier in plan.carriers],
            findings=[FindingView.model_validate(finding_view(finding, labels)) for finding in findings],
            declared=plan.declared(),
            exclusions=plan.exclusions(),
            alerts=alerts,
            warnings=len(findings) - alerts,
            checked_at=plan.checked_at,
            checked=plan.checked,
            checking=plan.checking,
            settings=plan.settings.plan.describe(),
        )
    )


@store_errors
async def suggest_frequency(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    body = await parse_body(request, SuggestBody)
    device, channel = find_channel(hub, body.channel)
    within = None
    if body.range_low_mhz is not None or body.range_high_mhz is not None:
        if body.range_low_mhz is None or body.range_high_mhz is None:
            raise ApiError(422, "invalid_body", "give both range_low_mhz and range_high_mhz")
        within = (body.range_low_mhz, body.range_high_mhz)
    plan = venue(request).frequency
    band = _band(body.low_mhz, body.high_mhz, body.step_khz)
    carrier, candidates = await plan.suggest_for(
        device.id, channel.index, band=band, within=within, step_khz=body.step_khz, count=body.count
    )
    view = SuggestView(
        channel=body.channel,
        current_mhz=carrier.frequency_mhz,
        band=_band_view(plan.band_for(carrier, band)),
        candidates=_candidate_views(candidates),
    )
    if body.apply:
        if not candidates:
            raise ApiError(409, "no_clean_frequency", "no clean frequency in the band", view.model_dump(mode="json"))
        # every channel of the carrier moves: channels of a wideband device on one frequency are one carrier
        # (the plan cannot tell which of them share an RF channel), and moving one would split it
        best = candidates[0].frequency_mhz
        view.tuned = [
            ChannelTuning(channel=channel_id(device.id, index), frequency_mhz=best) for index in carrier.channels
        ]
        failed = await _tune(
            hub, [(tuning, device.id, index) for tuning, index in zip(view.tuned, carrier.channels, strict=True)]
        )
        view.applied = next((t.outcome for t in view.tuned if t.outcome and not t.outcome.ok), view.tuned[-1].outcome)
        if failed is not None:
            raise command_error(hub, failed, view.model_dump(mode="json"))
    return json_response(view)


NOT_SENT: Final = "not_sent"


async def _tune(hub: HubService, tunings: Sequence[tuple[ChannelTuning, str, int]]) -> CommandResult | None:
    """Tune each channel to its frequency, as commands (token, audit, the receiver's confirmation), setting each
    tuning's outcome; all of them or none, as far as the hub can tell before sending. Every command is checked
    first (``hub.refusal``: an unknown or offline device, a family with no frequency control, a value outside
    its limits): one refused, none is sent. A command that then fails stops the rest (its receiver may be gone,
    the plan was made for all of them). Returns the failure, if any, with the channel named and how many moved
    (for :func:`command_error`): each channel's outcome says which moved and which did not."""
    commands = [
        (tuning, Command(device_id=device_id, channel=index, kind=CommandKind.FREQUENCY, value=tuning.frequency_mhz))
        for tuning, device_id, index in tunings
    ]
    failed: tuple[ChannelTuning, CommandResult] | None = None
    for tuning, command in commands:
        refused = hub.refusal(command, SOURCE)  # audited there
        if refused is not None:
            tuning.outcome = _outcome(refused)
            failed = failed or (tuning, refused)
    how = "was refused"
    if failed is None:
        how = "failed"
        for tuning, command in commands:
            result = await hub.apply(command, SOURCE)
            tuning.outcome = _outcome(result)
            if not result.ok:
                failed = (tuning, result)
                break
    if failed is None:
        return None
    tuning, result = failed
    tuned = sum(1 for other, _ in commands if other.outcome is not None and other.outcome.ok)
    for other, command in commands:
        if other.outcome is None:
            unsent = CommandResult(ok=False, error=f"not sent: {tuning.channel} {how}", code=NOT_SENT)
            hub.record_unsent(command, SOURCE, unsent)
            other.outcome = _outcome(unsent)
    said = f"{tuning.channel}: {result.error or 'the command failed'}"
    if len(commands) > 1:
        said += f" ({tuned} of {len(commands)} channels retuned, the rest not sent: details say which)"
    return result.model_copy(update={"error": said})


def _outcome(result: CommandResult) -> CommandOutcome:
    return CommandOutcome(ok=result.ok, value=result.value, error=result.error, code=result.code)


@store_errors
async def coordinate_group(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    body = await parse_body(request, CoordinateBody)
    band = _band(body.low_mhz, body.high_mhz, body.step_khz)
    assert band is not None
    channels = [find_channel(hub, reference) for reference in body.channels]
    if len({(device.id, channel.index) for device, channel in channels}) < len(channels):
        raise ApiError(422, "invalid_body", "a channel is given twice")
    count = body.count or len(channels)
    if not count or (channels and count != len(channels)):
        raise ApiError(422, "invalid_body", "give count, or the channels to retune (count is then their number)")
    if body.apply and not channels:
        raise ApiError(422, "invalid_body", "apply needs the channels to tune")
    result = await venue(request).frequency.coordinate_group(
        count,
        band,
        backups=body.backups,
        family=body.family,
        step_khz=body.step_khz,
        moving=[(device.id, channel.index) for device, channel in channels],
    )
    plan = [
        ChannelTuning(channel=reference, frequency_mhz=candidate.frequency_mhz)
        for reference, candidate in zip(body.channels, result.frequencies, strict=False)
    ]
    view = CoordinationView(
        frequencies=_candidate_views(result.frequencies),
        backups=_candidate_views(result.backups),
        band=_band_view(result.band),
        fixed_carriers=result.fixed,
        notes=result.notes,
        plan=plan,
    )
    if body.apply:
        if len(plan) < len(channels):
            raise ApiError(
                409,
                "no_clean_frequency",
                f"the band holds a frequency for {len(plan)} of the {len(channels)} channels",
                view.model_dump(mode="json"),
            )
        failed = await _tune(
            hub, [(tuning, device.id, channel.index) for tuning, (device, channel) in zip(plan, channels, strict=True)]
        )
        if failed is not None:
            raise command_error(hub, failed, view.model_dump(mode="json"))
    return json_response(view)


async def _declare(request: web.Request, carrier_id: int | None) -> DeclaredCarrier:
    body = await parse_body(request, DeclaredCarrierBody)
    plan = venue(request).frequency
    if carrier_id is not None:
        plan.declared_carrier(carrier_id)
    return await plan.declare(
        body.label,
        body.frequency_mhz,
        source=SOURCE,
        bandwidth_khz=body.bandwidth_khz,
        active=body.active,
        family=body.family,
        carrier_id=carrier_id,
    )


async def _exclude(request: web.Request, exclusion_id: int | None) -> FrequencyExclusion:
    body = await parse_body(request, ExclusionBody)
    plan = venue(request).frequency
    if exclusion_id is not None:
        plan.exclusion(exclusion_id)
    return await plan.exclude(
        source=SOURCE,
        label=body.label,
        low_mhz=body.low_mhz,
        high_mhz=body.high_mhz,
        tv_grid=body.tv_grid,
        tv_channel=body.tv_channel,
        exclusion_id=exclusion_id,
    )


_WRITE_ERRORS: Final = (400, 404, 409, 422)


@dataclass(frozen=True)
class _Collection:
    """One stored list of the plan (declared carriers, exclusions) as list/get/create/replace/delete handlers."""

    name: str
    key: str  # the path parameter
    items: Callable[[FrequencyService], Sequence[BaseModel]]
    item_list: type[BaseModel]
    one: Callable[[FrequencyService, int], BaseModel]
    save: Callable[[web.Request, int | None], Awaitable[BaseModel]]
    remove: Callable[[FrequencyService, int], Awaitable[BaseModel]]

    def handlers(self) -> tuple[Handler, Handler, Handler, Handler, Handler]:
        async def listing(request: web.Request) -> web.Response:
            return json_response(self.item_list(items=list(self.items(venue(request).frequency))))

        async def getting(request: web.Request) -> web.Response:
            return json_response(self.one(venue(request).frequency, path_number(request, self.key)))

        async def creating(request: web.Request) -> web.Response:
            return json_response(await self.save(request, None), 201)

        async def replacing(request: web.Request) -> web.Response:
            return json_response(await self.save(request, path_number(request, self.key)))

        async def deleting(request: web.Request) -> web.Response:
            await self.remove(venue(request).frequency, path_number(request, self.key))
            return web.Response(status=NO_CONTENT)

        made = (listing, getting, creating, replacing, deleting)
        for handler, verb in zip(made, ("list", "get", "create", "replace", "delete"), strict=True):
            handler.__name__ = f"{verb}_{self.name}"  # the OpenAPI operationId
        return (listing, *(store_errors(handler) for handler in made[1:]))  # type: ignore[return-value]

    def operations(
        self, path: str, one: str, summary: str, body: type[BaseModel], response: type[BaseModel]
    ) -> tuple[Operation, ...]:
        listing, getting, creating, replacing, deleting = self.handlers()
        item = f"{path}/{{{self.key}:[0-9]+}}"
        param = {self.key: f"the id of {one}"}
        return (
            Operation("GET", path, listing, summary, "frequency", response=self.item_list),
            Operation("POST", path, creating, f"Add {one}", "frequency", write=True, body=body,
                      response=response, status=201, errors=_WRITE_ERRORS),
            Operation("GET", item, getting, f"Get {one}", "frequency", response=response,
                      errors=(404,), path_params=param),
            Operation("PUT", item, replacing, f"Replace {one}", "frequency", write=True, body=body,
                      response=response, errors=_WRITE_ERRORS, path_params=param),
            Operation("DELETE", item, deleting, f"Remove {one}", "frequency", write=True, status=204,
                      errors=(404,), path_params=param),
        )  # fmt: skip


_DECLARED = _Collection(
    "declared_carrier",
    "carrier_id",
    lambda plan: plan.declared(),
    DeclaredCarrierList,
    lambda plan, carrier_id: plan.declared_carrier(carrier_id),
    _declare,
    lambda plan, carrier_id: plan.undeclare(carrier_id, source=SOURCE),
)
_EXCLUSIONS = _Collection(
    "exclusion",
    "exclusion_id",
    lambda plan: plan.exclusions(),
    ExclusionList,
    lambda plan, exclusion_id: plan.exclusion(exclusion_id),
    _exclude,
    lambda plan, exclusion_id: plan.unexclude(exclusion_id, source=SOURCE),
)


_PLAN = "/api/v1/frequency-plan"

FREQUENCY_OPERATIONS: Final = (
    Operation("GET", _PLAN, frequency_plan, "The live frequency plan: carriers, findings, settings", "frequency",
              response=FrequencyPlanView),
    Operation("POST", f"{_PLAN}/suggest", suggest_frequency,
              "Clean frequencies for one channel (with apply: tune it to the best, as a command)", "frequency",
              write=True, body=SuggestBody, response=SuggestView,
              errors=(400, 404, 409, 422, 429, 502, 503, 504)),
    Operation("POST", f"{_PLAN}/coordinate", coordinate_group,
              "A compatible set of frequencies (with backups) for a group, around the plan", "frequency",
              write=True, body=CoordinateBody, response=CoordinationView,
              errors=(400, 404, 409, 422, 429, 502, 503, 504)),
    *_DECLARED.operations(f"{_PLAN}/carriers", "a declared carrier", "Declared carriers (gear the hub cannot see)",
                          DeclaredCarrierBody, DeclaredCarrier),
    *_EXCLUSIONS.operations(f"{_PLAN}/exclusions", "an exclusion", "Exclusions: occupied TV channels and ranges",
                            ExclusionBody, FrequencyExclusion),
)  # fmt: skip
