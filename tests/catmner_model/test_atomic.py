"""Atomic writes: a failed write leaves the previous file and no temp file behind."""

from __future__ import annotations

import json

import pytest
from catmner_model.atomic import atomic_write, atomic_write_json


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "sub" / "run.json"
    atomic_write_json(path, {"epoch": 1})

    def half_then_crash(tmp):
        tmp.write_text('{"epoch": 2, "trunc')
        raise KeyboardInterrupt  # as if killed mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_crash)
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]
    atomic_write_json(path, {"epoch": 2})
    assert json.loads(path.read_text()) == {"epoch": 2}
