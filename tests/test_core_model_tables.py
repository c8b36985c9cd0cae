"""The one command table and the one low-battery rule that REST, MQTT, the fleet and the alerts share."""

from __future__ import annotations

from hub.model import LOW_BATTERY, BatteryLimits, Channel, CommandKind, command_field, command_keys
from hub.persistence import AlertSettings


def test_every_command_kind_can_be_sent_in_a_set_message() -> None:
    sendable = set(command_keys(channel=True).values()) | set(command_keys(channel=False).values())
    assert sendable == set(CommandKind)


def test_set_keys_and_the_fields_they_change() -> None:
    assert command_keys(channel=True)["gain_step_db"] is CommandKind.GAIN_STEP
    assert command_keys(channel=False)["name"] is CommandKind.DEVICE_NAME
    step = command_field(CommandKind.GAIN_STEP, channel=True)
    assert step is not None and step.state_field == "gain_db", "a gain step's audit 'before' is the gain"
    assert command_field(CommandKind.METER_RATE, channel=True) is None, "the meter rate is the device's"


def test_a_channel_is_low_at_or_below_any_limit() -> None:
    assert LOW_BATTERY.is_low(Channel(index=1, battery_bars=1))
    assert LOW_BATTERY.is_low(Channel(index=1, battery_bars=5, battery_runtime_min=30))
    assert not LOW_BATTERY.is_low(Channel(index=1, battery_bars=2, battery_percent=21))
    assert not LOW_BATTERY.is_low(Channel(index=1)), "a battery the receiver does not report is not low"
    assert BatteryLimits(percent=50).is_low(Channel(index=1, battery_percent=40))


def test_the_alert_rules_start_from_the_same_limits() -> None:
    settings = AlertSettings()
    assert (settings.battery_bars, settings.battery_percent, settings.battery_runtime_min) == (
        LOW_BATTERY.bars,
        LOW_BATTERY.percent,
        LOW_BATTERY.runtime_min,
    )
