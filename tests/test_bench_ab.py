"""bench.ab keeps every side-by-side run: a second run of the same day and label gets a file of its own."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_run_with_the_same_label_keeps_the_first_runs_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # bench/ is the checkout's, not an installed package
    new_record = importlib.import_module("bench.ab").new_record
    first = new_record(tmp_path, "2026-12-06-start-of-session-c1000")
    first.write_text('{"machine": "intel"}\n')

    second = new_record(tmp_path, "2026-12-06-start-of-session-c1000")
    third = new_record(tmp_path, "2026-12-06-start-of-session-c1000")

    assert first.name == "2026-12-06-start-of-session-c1000.jsonl"
    assert second.name == "2026-12-06-start-of-session-c1000-2.jsonl"
    assert third.name == "2026-12-06-start-of-session-c1000-3.jsonl"
    assert first.read_text() == '{"machine": "intel"}\n'
    assert second.read_text() == third.read_text() == ""
