"""A receiver down when the hub starts (configured, or added over REST, and not answering since the start) is
listed over REST offline with every channel it had and their names, from what the hub kept of it the last time
it identified itself: its channels hold no reading (``updated_at`` null, nothing made up).

Found by an outside audit of the board: such a receiver was missing from ``/api/v1/devices``,
``/api/v1/channels`` and the live feed, so the board showed one "receiver offline" tile for it, not one per
channel, and an engineer looking for "Lead Vocal" found no tile of that name.

Whole hubs in this process on a data dir in tmp_path, a Shure simulator as the receiver, REST as a client sees it.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from wmhub_shure.simulator import ShureSimulator

from hub.persistence import DATABASE_FILE
from tests.fault_harness import Api, hub_config, running_hub, until

# every channel field a receiver reports (a reading); the hub's own (the channel's number, its extended name)
# and the receiver's name for it are not
_NOT_READINGS = {
    "id",
    "device_id",
    "device_online",
    "index",
    "name",
    "extended_name",
    "updated_at",
    "warnings",
    "performer",
}


async def channel_names(api: Api, device_id: str) -> list[str | None]:
    device = await api.get(f"/api/v1/devices/{device_id}")
    return [channel["name"] for channel in device.get("channels", [])]


async def identified(api: Api, names: list[str]) -> str:
    """The id of the one receiver, once it is online over REST with these channel names."""
    found: list[str] = []

    async def online_with_names() -> bool:
        items = (await api.get("/api/v1/devices"))["items"]
        found[:] = [item["id"] for item in items if item["online"]]
        return len(found) == 1 and await channel_names(api, found[0]) == names

    await until(online_with_names, 20, f"the receiver online with channels {names}")
    return found[0]


@pytest.mark.parametrize("added", ["config", "rest"])
async def test_a_receiver_down_since_the_start_is_listed_offline_with_its_channels_and_names(
    tmp_path: Path, added: str
) -> None:
    data_dir = tmp_path / "data"
    async with ShureSimulator("ulxd4q") as receiver:
        names = ["Host", "Lead Vocal", "Guitar", "Spare"]
        for index, name in enumerate(names, start=1):
            receiver.set_name(index, name)
        configured = [receiver.url] if added == "config" else []
        async with running_hub(hub_config(data_dir, configured), plugins="shure") as hub, Api(hub) as api:
            if added == "rest":
                assert (await api.post("/api/v1/devices", {"url": receiver.url}))[0] == 201
            device_id = await identified(api, names)
            receiver.set_name(3, "Keys")  # renamed at the front panel while the hub runs: the new name is kept
            names[2] = "Keys"
            await until(lambda: _has_names(api, device_id, names), 10, "the new name over REST")

    # the receiver stays off: the restarted hub has not heard from it
    async with running_hub(hub_config(data_dir, configured), plugins="shure") as hub, Api(hub) as api:
        device = await api.get(f"/api/v1/devices/{device_id}")
        assert (device["online"], device["model"]) == (False, "ULXD4Q"), device
        assert [channel["name"] for channel in device["channels"]] == names
        for channel in device["channels"]:
            assert channel["updated_at"] is None, channel  # not reported this run
            readings = {key: value for key, value in channel.items() if key not in _NOT_READINGS}
            assert {key: value for key, value in readings.items() if value not in (None, [], {})} == {}
        assert [item["id"] for item in (await api.get("/api/v1/devices"))["items"]] == [device_id]
        channels = (await api.get("/api/v1/channels"))["items"]
        assert [(channel["id"], channel["name"]) for channel in channels] == [
            (f"{device_id}:{index}", name) for index, name in enumerate(names, start=1)
        ]
        if added == "rest":  # removed while down: gone at once, and not brought back by the next start
            assert await api.delete(f"/api/v1/devices/{device_id}") == 204
            assert (await api.get("/api/v1/devices"))["items"] == []
            assert (await api.get("/api/v1/channels"))["items"] == []
    if added == "rest":
        async with running_hub(hub_config(data_dir, []), plugins="shure") as hub, Api(hub) as api:
            assert (await api.get("/api/v1/devices"))["items"] == []


async def _has_names(api: Api, device_id: str, names: list[str]) -> bool:
    return await channel_names(api, device_id) == names


@pytest.mark.parametrize("kept", ['{"id": "shure-x", "channels": [', '{"id": 5}', '{"channels": "x"}', "[]"])
async def test_a_damaged_identity_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kept: str
) -> None:
    """A row the hub cannot read (edited by hand, damaged) keeps no device from being watched: the receiver is
    listed once it answers, as before the hub kept identities."""
    data_dir = tmp_path / "data"
    receiver = ShureSimulator("ulxd4d")
    async with receiver, running_hub(hub_config(data_dir, [receiver.url]), plugins="shure") as hub, Api(hub) as api:
        for index, name in ((1, "Host"), (2, "Guest")):
            receiver.set_name(index, name)
        await identified(api, ["Host", "Guest"])
    with closing(sqlite3.connect(data_dir / DATABASE_FILE)) as connection, connection:
        assert connection.execute("UPDATE device_identity SET value = ?", (kept,)).rowcount == 1
    async with running_hub(hub_config(data_dir, [receiver.url]), plugins="shure") as hub, Api(hub) as api:
        assert (await api.get("/api/v1/devices"))["items"] == []
        assert [connection["url"] for connection in (await api.get("/api/health"))["connections"]] == [receiver.url]
    assert "the identity kept of" in caplog.text and "is damaged: ignored" in caplog.text
