"""A store that fails under a build (issue 25): disk full, read-only, an exclusive lock by another process.
Each is one line naming the store and what to do, nothing half-stored, and words computed before the failure
saved aside (as for a locked store). Real SQLite on real tmpfs mounts (skipped where mount is not allowed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from kb_expand import load_label_words
from kb_expand.build import BuildConfig, run_build
from kb_expand.errors import KbxError
from kb_expand.store import Store


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


def _store_on_small_tmpfs(mount, point: Path) -> Path:
    """A new, empty store on a 4 MiB tmpfs mounted at `point`."""
    db = mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", point=point) / "kb.sqlite"
    with Store.open(db):
        pass
    return db


def test_disk_full_while_storing_is_one_line_and_words_saved(tmp_path, vg_sample, mount, pending):
    db = _store_on_small_tmpfs(mount, tmp_path / "small")
    small = db.parent

    def fill(stage: str) -> None:  # inside the build's transaction: the disk fills up
        if stage == "build":
            with open(small / "filler", "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError:
                    pass

    with pytest.raises(KbxError) as exc:
        run_build(BuildConfig(source="visualgenome", vg=str(vg_sample), progress=False), db=db, on_write=fill)
    line = str(exc.value)
    assert "\n" not in line and line.startswith(
        f"{db}: cannot use the label-word store (database or disk is full)"
    )
    assert "nothing lost" in line
    assert load_label_words(str(pending(line))).words()
    (small / "filler").unlink()
    with Store.open(db) as store:
        assert store.builds() == []


def test_read_only_store_is_one_line_and_words_saved(tmp_path, vg_sample, mount, kbx, pending):
    db = _store_on_small_tmpfs(mount, tmp_path / "ro")
    subprocess.run(["mount", "-o", "remount,ro", str(db.parent)], check=True)
    r = kbx("build", "-s", "visualgenome", "--vg", str(vg_sample), "-q", KBX_DB=str(db))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "read-only" in lines[0] and str(db) in lines[0] and "nothing lost" in lines[0], lines[0]
    assert load_label_words(str(pending(lines[0]))).source == "visualgenome"


def test_exclusive_lock_from_the_start_is_one_line_with_a_hint(db, vg_sample, kbx, hold_lock):
    holder = hold_lock(db, 60, exclusive=True)
    try:
        r = kbx(
            "build", "-s", "visualgenome", "--vg", str(vg_sample), "-q", KBX_DB=str(db), KBX_LOCK_TIMEOUT="1"
        )
    finally:
        holder.kill()
        holder.wait()
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "locked by another process for 1 s" in lines[0] and "KBX_LOCK_TIMEOUT" in lines[0], lines[0]


def test_exclusive_lock_taken_while_building_keeps_the_words(db, vg_sample, monkeypatch, hold_lock, pending):
    """The words are computed, then another process takes an exclusive lock (reads fail too)."""
    from kb_expand import build

    monkeypatch.setenv("KBX_LOCK_TIMEOUT", "1")
    holders: list[subprocess.Popen] = []
    real_inputs = build._inputs

    def inputs_then_lock(source, scheme, store):
        calls.append(1)
        if len(calls) == 2:  # the second call comes after the words are computed
            holders.append(hold_lock(db, 60, exclusive=True, schema=False))  # the build has the store open
        return real_inputs(source, scheme, store)

    calls: list[int] = []
    monkeypatch.setattr(build, "_inputs", inputs_then_lock)
    try:
        with pytest.raises(KbxError) as exc:
            run_build(BuildConfig(source="visualgenome", vg=str(vg_sample), progress=False), db=db)
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
    saved = json.loads(pending(line).read_text())
    assert saved["source"] == "visualgenome"
