"""A store that fails under a build (issue 25): disk full, read-only, an exclusive lock by another process.
Each is one line naming the store and what to do, nothing half-stored, and words computed before the failure
saved aside (as for a locked store). Real SQLite on real tmpfs mounts (skipped where mount is not allowed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kb_expand import load_label_words
from kb_expand.build import BuildConfig, run_build
from kb_expand.errors import KbxError
from kb_expand.store import Store


def _env(**extra) -> dict:
    env = {**os.environ, **extra}
    env.pop("KBX_DEBUG", None)
    env.pop("CATMNER_DEBUG", None)
    return env


@pytest.fixture
def mount(tmp_path):
    points: list[Path] = []

    def do(*args: str, point: Path) -> Path:
        point.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", *args, str(point)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(
                f"cannot mount here ({r.stderr.strip() or r.returncode}): needs root and mount rights"
            )
        points.append(point)
        return point

    yield do
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _pending(line: str) -> Path:
    return Path(line.split("the words are in ")[1].split(" (usable")[0])


def test_disk_full_while_storing_is_one_line_and_words_saved(tmp_path, data_dir, mount):
    small = mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", point=tmp_path / "small")
    db = small / "kb.sqlite"
    with Store.open(db):
        pass

    def fill(stage: str) -> None:  # inside the build's transaction: the disk fills up
        if stage == "build":
            with open(small / "filler", "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError:
                    pass

    vg = data_dir / "visualgenome" / "relationships_sample5.json"
    with pytest.raises(KbxError) as exc:
        run_build(BuildConfig(source="visualgenome", vg=str(vg), progress=False), db=db, on_write=fill)
    line = str(exc.value)
    assert "\n" not in line and line.startswith(
        f"{db}: cannot use the label-word store (database or disk is full)"
    )
    assert "nothing lost" in line
    assert load_label_words(str(_pending(line))).words()
    (small / "filler").unlink()
    with Store.open(db) as store:
        assert store.builds() == []


def test_read_only_store_is_one_line_and_words_saved(tmp_path, data_dir, mount):
    point = mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", point=tmp_path / "ro")
    db = point / "kb.sqlite"
    with Store.open(db):
        pass
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
    vg = data_dir / "visualgenome" / "relationships_sample5.json"
    cmd = [sys.executable, "-m", "kb_expand.cli", "build", "-s", "visualgenome", "--vg", str(vg), "-q"]
    r = subprocess.run(cmd, env=_env(KBX_DB=str(db)), capture_output=True, text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "read-only" in lines[0] and str(db) in lines[0] and "nothing lost" in lines[0], lines[0]
    assert load_label_words(str(_pending(lines[0]))).source == "visualgenome"


_EXCLUSIVE = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_exclusive_lock_from_the_start_is_one_line_with_a_hint(db, data_dir):
    with Store.open(db):
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", _EXCLUSIVE, str(db), "60"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        vg = data_dir / "visualgenome" / "relationships_sample5.json"
        cmd = [sys.executable, "-m", "kb_expand.cli", "build", "-s", "visualgenome", "--vg", str(vg), "-q"]
        r = subprocess.run(cmd, env=_env(KBX_DB=str(db), KBX_LOCK_TIMEOUT="1"), capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "locked by another process for 1 s" in lines[0] and "KBX_LOCK_TIMEOUT" in lines[0], lines[0]


def test_exclusive_lock_taken_while_building_keeps_the_words(db, data_dir, monkeypatch):
    """The words are computed, then another process takes an exclusive lock (reads fail too)."""
    from kb_expand import build

    monkeypatch.setenv("KBX_LOCK_TIMEOUT", "1")
    holders: list[subprocess.Popen] = []
    real_inputs = build._inputs

    def inputs_then_lock(source, scheme, store):
        calls.append(1)
        if len(calls) == 2:  # the second call comes after the words are computed
            h = subprocess.Popen([sys.executable, "-c", _EXCLUSIVE, str(db), "60"], stdout=subprocess.PIPE,
                                 text=True)  # fmt: skip
            holders.append(h)
            assert h.stdout.readline().strip() == "locked"
        return real_inputs(source, scheme, store)

    calls: list[int] = []
    monkeypatch.setattr(build, "_inputs", inputs_then_lock)
    vg = data_dir / "visualgenome" / "relationships_sample5.json"
    try:
        with pytest.raises(KbxError) as exc:
            run_build(BuildConfig(source="visualgenome", vg=str(vg), progress=False), db=db)
    finally:
        for h in holders:
            h.kill()
            h.wait()
    line = str(exc.value)
    assert (
        len(calls) == 2
        and "\n" not in line
        and "locked by another process" in line
        and "nothing lost" in line
    )
    saved = json.loads(_pending(line).read_text())
    assert saved["source"] == "visualgenome"
