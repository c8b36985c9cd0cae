"""Set and get on a device's or a channel's MQTT topics (``<base>/devices/<id>[/channels/<n>]/set|get``).

The keys of a set message are the command table of :mod:`hub.model` (``command_keys``); every command goes
through ``HubService.apply``, so it is validated, rate limited and audited like one from REST.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import orjson
from pydantic import Field

from hub.model import EXPIRED_PREFIX, MAX_SLOTS, Command, CommandResult, command_keys, field_values
from hub.mqtt import payloads
from hub.mqtt.messages import RequestError, StrictMessage, check_deadline, parse_object, shortened, validate
from hub.mqtt.publisher import StatePublisher
from hub.text import DEFAULT_TEXT_WIDTH

log = logging.getLogger("hub.mqtt")

SOURCE = "mqtt"


class ChannelSet(StrictMessage):
    """``<base>/devices/<id>/channels/<n>/set``: one or more of these keys."""

    name: str | None = Field(default=None, min_length=1, max_length=DEFAULT_TEXT_WIDTH)
    muted: bool | Literal["toggle"] | None = None
    gain_db: float | None = None
    gain_step_db: float | None = None
    frequency_mhz: float | None = Field(default=None, gt=0)
    identify: bool | None = None
    rf_output: bool | None = None
    tx_power: str | None = Field(default=None, min_length=1, max_length=DEFAULT_TEXT_WIDTH)
    slot_rf_power_mode: str | None = Field(default=None, min_length=1, max_length=DEFAULT_TEXT_WIDTH)
    # not a command: the transmitter slot this message's slot commands (rf_output, slot_rf_power_mode) address
    slot: int | None = Field(default=None, ge=1, le=MAX_SLOTS)


class DeviceSet(StrictMessage):
    """``<base>/devices/<id>/set``."""

    name: str | None = Field(default=None, min_length=1, max_length=DEFAULT_TEXT_WIDTH)
    identify: bool | None = None
    meter_rate_ms: int | None = Field(default=None, ge=0, le=99999)


assert set(ChannelSet.model_fields) - {"slot"} == set(command_keys(channel=True)), "ChannelSet must match the table"
assert set(DeviceSet.model_fields) == set(command_keys(channel=False)), "DeviceSet must match hub.model's table"


class ControlHandler(StatePublisher):
    """Answers set and get messages, and puts back what a refused set had the entity show."""

    async def _answer_control(self, device_id: str, channel: int | None, action: str, raw: bytes) -> None:
        request: dict[str, Any] | None = None
        where: dict[str, Any] = {"device_id": device_id, "channel": channel}
        try:
            if action == "get":
                request = _get_request(raw)
                check_deadline(request, self.hub.clock.now())
                self._respond("get", request, "ok", {**where, "state": self._republish(device_id, channel)}, None)
                return
            request = parse_object(raw)
            check_deadline(request, self.hub.clock.now())  # after the device's queue: it may have waited there
            results = await self._apply_set(device_id, channel, request)
        except RequestError as exc:
            message = shortened(str(exc))
            log.warning("MQTT %s on %s channel %s refused: %s", action, device_id, channel, message)
            self._respond(action, request, "error", where, message)
            self._restore(device_id, channel)
            return
        except Exception as exc:  # the requester still gets an answer, and the device's queue goes on
            log.exception("MQTT %s on %s channel %s failed", action, device_id, channel)
            self._respond(action, request, "error", where, f"internal error: {shortened(str(exc))}")
            self._restore(device_id, channel)
            return
        failed = {key: result for key, result in results.items() if not result.ok}
        data = {**where, "results": {key: result.model_dump() for key, result in results.items()}}
        error = "; ".join(f"{key}: {result.error or result.code}" for key, result in failed.items()) or None
        self._respond("set", request, "error" if failed else "ok", data, error)
        if failed:
            log.warning("MQTT set on %s channel %s not carried out: %s", device_id, channel, error)
            self._restore(device_id, channel)

    def _restore(self, device_id: str, channel: int | None) -> None:
        """Publish the current state again after a refused or failed set. A Home Assistant entity that
        showed the value the user asked for (a text field, a number) then returns to what the device has."""
        device = self.hub.state.devices.get(device_id)
        if device is None or self.client is None:
            return
        found = device.channel(channel) if channel is not None else None
        if found is None:
            self._publish(self.topics.device(device_id), payloads.encode(payloads.device_state(device)))
        elif found.reported:  # else it has no state to return to yet: it goes out with the receiver's report
            self._publish(self.topics.channel(device_id, found.index), payloads.encode(payloads.channel_state(found)))
        self.client.flush()

    async def _apply_set(
        self, device_id: str, channel: int | None, request: dict[str, Any]
    ) -> dict[str, CommandResult]:
        model: type[ChannelSet | DeviceSet] = DeviceSet if channel is None else ChannelSet
        kinds = command_keys(channel is not None)
        message = validate(model, request)
        nulls = sorted(key for key in message.model_fields_set if getattr(message, key) is None)
        if nulls:  # a flow that built the message from a missing property: "ok" would say it was done
            raise RequestError(
                "; ".join(f"{key}: null is no value (leave the key out to leave it alone)" for key in nulls)
            )
        values = message.model_dump(exclude_none=True)
        values = {key: value for key, value in values.items() if not (key == "identify" and value is False)}
        slot = values.pop("slot", None)
        if not values:
            raise RequestError(f"nothing to set; use one or more of: {', '.join(kinds)}")
        if device_id not in self.hub.state.devices:
            raise RequestError(f"unknown device {device_id!r}")
        commands = {
            key: Command(device_id=device_id, channel=channel, kind=kinds[key], value=value, slot=slot)
            for key, value in values.items()
        }
        # every part is checked before any is sent: a message is carried out whole or not at all
        # (each refusal is audited by hub.refusal, each part left out of a refused message here)
        refused = {key: result for key, command in commands.items() if (result := self.hub.refusal(command, SOURCE))}
        if refused:
            unsent = CommandResult(ok=False, error="not sent: another part of the message was refused", code="not_sent")
            for key, command in commands.items():
                if key not in refused:
                    self.hub.record_unsent(command, SOURCE, unsent)
            return {key: refused.get(key, unsent) for key in commands}
        # checked by check_deadline before: a number or absent
        deadline = float(request["deadline"]) if "deadline" in request else None
        results: dict[str, CommandResult] = {}
        for key, command in commands.items():
            if any(not result.ok for result in results.values()):
                # the receiver may be gone or in another state than the message assumed: stop there
                results[key] = CommandResult(ok=False, error="not sent: an earlier part failed", code="not_sent")
                self.hub.record_unsent(command, SOURCE, results[key])
                continue
            # Each part waits for the receiver behind commands from REST or the board: one whose deadline
            # passes there is not sent, as the sender has already taken the message as failed.
            result = await self.hub.apply(command, SOURCE, deadline)
            if result.code == "expired" and not results:
                # nothing of the message was done: the same answer as for one that arrived late, its error
                # starting "expired:" whoever expired it (DeviceManager.apply sees to a plugin's)
                raise RequestError(result.error or f"{EXPIRED_PREFIX} not carried out")
            results[key] = result
        return results

    def _republish(self, device_id: str, channel: int | None) -> dict[str, Any]:
        device = self.hub.state.devices.get(device_id)
        if device is None:
            raise RequestError(f"unknown device {device_id!r}")
        if channel is None:
            self._publish_device(device)
            return payloads.device_state(device)
        found = device.channel(channel)
        if found is None:
            raise RequestError(f"device {device_id} has no channel {channel}")
        values = payloads.meter_values(field_values(found))
        if found.reported and not self._defer_to_another_hub(device):  # the answer says what is known so far
            self._publish(self.topics.channel(device_id, channel), payloads.encode(payloads.channel_state(found)))
            self._publish_meters(device_id, channel, values)
        return {**payloads.channel_state(found), **dict(zip(payloads.METER_ORDER, values, strict=True))}


def _get_request(raw: bytes) -> dict[str, Any]:
    """A get takes any payload (docs/mqtt.md; a Node-RED inject node sends a timestamp): a JSON object is a
    request whose ``transaction`` comes back in the answer, anything else only says "now"."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return parse_object(raw) if isinstance(value, dict) else {}
