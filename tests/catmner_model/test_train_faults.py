"""Training under faults: a read-only run directory (a real read-only tmpfs / bind mount), a disk that fills up
mid-run (a real small tmpfs), a damaged trainer.pt, a run that died between its model and its checkpoint, and
the label-word defaults. Each failure is one line, and the last complete checkpoint survives it."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from catmner_model.cli import app
from catmner_model.data import load_split
from catmner_model.training import loop as train_loop
from catmner_model.training.config import TrainConfig, TrainError
from catmner_model.training.loop import train
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
LABELS = {"labels": {"person": ["person", "singer"], "location": ["city", "country"]}}
runner = CliRunner()


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CATMNER_DATA", str(DATA))
    monkeypatch.delenv("CATMNER_DEBUG", raising=False)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    tweets = [t for t in load_split("twitter2015", "train", DATA) if t.entities and len(t.tokens) <= 20][:6]
    return {"train": tweets, "valid": tweets[:3], "test": tweets[:3]}


@pytest.fixture
def labels(tmp_path) -> str:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(LABELS))
    return str(path)


def config(output: Path, labels: str | None, **kw) -> TrainConfig:
    base = dict(labels=labels, text_encoder="tiny", image_encoder="none", variant="cat", epochs=2, lr=5e-3,
                batch_size=3, seed=3, output=str(output), quiet=True, num_threads=1)  # fmt: skip
    return TrainConfig(**{**base, **kw})


class Mounts:
    """Real mounts under tmp_path (tests run as root here), unmounted at the end; skip where mount fails."""

    def __init__(self):
        self.points: list[Path] = []

    def mount(self, *args: str, point: Path) -> Path:
        point.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", *args, str(point)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(
                f"cannot mount here ({r.stderr.strip() or r.returncode}): needs root and mount rights"
            )
        self.points.append(point)
        return point

    def close(self):
        for point in reversed(self.points):
            subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture
def mounts():
    m = Mounts()
    yield m
    m.close()


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _cli_train(output: Path, labels: str | None, *extra: str):
    args = ["train", "--text-encoder", "tiny", "--image-encoder", "none", "--epochs", "1", "--max-train", "6"]
    args += ["--max-eval", "3", "--batch-size", "3", "--output", str(output), "--quiet", "--threads", "1"]
    return runner.invoke(app, [*args, *(["--labels", labels] if labels is not None else []), *extra])


def test_read_only_output_is_one_line(tmp_path, labels, mounts):
    ro = mounts.mount("-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", point=tmp_path / "ro")
    line = one_error_line(_cli_train(ro / "run", labels))
    assert (
        line
        == f"error: {ro}: cannot write (read-only file system); choose another --output (or make it writable)"
    )


def test_run_dir_turned_read_only_keeps_its_checkpoint(tmp_path, labels, data, mounts):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(
            config(run, labels),
            data=data,
            on_epoch_end=lambda e, _: (_ for _ in ()).throw(KeyboardInterrupt()),
        )
    before = (run / "checkpoint.json").read_text()
    mounts.mount("--bind", str(run), point=run)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(run)], check=True)
    with pytest.raises(TrainError, match=r"cannot write \(read-only file system\)"):
        train(config(run, labels), data=data)
    assert (run / "checkpoint.json").read_text() == before


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_disk_full_mid_run_is_one_line_and_resumes(tmp_path, labels, data, mounts):
    disk = mounts.mount("-t", "tmpfs", "-o", "size=48m", "tmpfs", point=tmp_path / "disk")
    run = disk / "run"
    fillers = []

    def fill_after_first(epoch, _):
        if epoch == 1:
            fillers.append(_fill(disk))

    with pytest.raises(TrainError) as err:
        train(config(run, labels), data=data, on_epoch_end=fill_after_first)
    msg = str(err.value)
    assert "\n" not in msg and "cannot write (no space left on device)" in msg
    assert msg.endswith(
        "free some space, then rerun the same command: the last complete checkpoint is intact"
    )
    assert json.loads((run / "checkpoint.json").read_text())["dir"] == "ckpt-epoch-0001"
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]  # half-written folders removed
    fillers[0].unlink()
    record = train(config(run, labels), data=data)  # the same command again: resumes after epoch 1
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]


def test_damaged_trainer_pt_is_one_clean_line(tmp_path, labels, data):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(
            config(run, labels),
            data=data,
            on_epoch_end=lambda e, _: (_ for _ in ()).throw(KeyboardInterrupt()),
        )
    trainer = run / "ckpt-epoch-0001" / "trainer.pt"
    good = trainer.read_bytes()
    for content, reason in [
        (good[: len(good) // 2], "truncated or not a torch file"),
        (pickle.dumps(os.system, protocol=4), "it holds more than tensors"),
    ]:
        trainer.write_bytes(content)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(TrainError) as err:
                train(config(run, labels), data=data)
        msg = str(err.value)
        assert msg.startswith(f"{trainer}: checkpoint does not match this model or is damaged ({reason}")
        assert "\n" not in msg and "weights_only" not in msg and msg.endswith(f"(or delete {run})")
        assert not [w for w in caught if "torch" in str(w.filename)], [str(w.message) for w in caught]


def test_run_that_died_before_its_first_checkpoint_restarts(tmp_path, labels, data, monkeypatch):
    run = tmp_path / "run"

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. killed by a full disk right after model/ was written

    monkeypatch.setattr(train_loop, "save_checkpoint", die)
    with pytest.raises(KeyboardInterrupt):
        train(config(run, labels), data=data)
    monkeypatch.undo()
    assert (run / "model" / "config.json").is_file() and not (run / "checkpoint.json").exists()
    record = train(config(run, labels), data=data)
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    # someone else's file is still protected
    other = tmp_path / "other"
    other.mkdir()
    (other / "model").mkdir()
    (other / "model" / "config.json").write_text('{"architectures": ["BertModel"]}')
    with pytest.raises(TrainError, match="holds no catmner checkpoint"):
        train(config(other, labels), data=data)


def test_failed_start_leaves_no_directory(tmp_path):
    target = tmp_path / "new" / "run"
    line = one_error_line(_cli_train(target, str(tmp_path / "missing.json")))
    assert "missing.json" in line and not (tmp_path / "new").exists()
    home = Path(os.environ["CATMNER_HOME"])
    args = ["train", "--variant", "text", "--text-encoder", "tiny", "--dataset", "nope", "--quiet"]
    line = one_error_line(runner.invoke(app, args))  # the default output, under $CATMNER_HOME/runs
    assert "unknown dataset 'nope'" in line and not (home / "runs").exists()


def test_text_variant_needs_no_labels_and_refuses_them(tmp_path, labels):
    ok = _cli_train(tmp_path / "t", None, "--variant", "text", "--json")  # no store, no label words
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["config"]["labels"] is None
    line = one_error_line(_cli_train(tmp_path / "t2", labels, "--variant", "text"))
    assert line == f"error: variant 'text' uses no label words: drop --labels {labels} (label words refine " \
        "attention in cat, i2t, t2i)"  # fmt: skip
    assert "uses no label words" in one_error_line(_cli_train(tmp_path / "t3", labels, "--variant", "mm"))
    # a refining variant still defaults to the textual build
    assert "run `kbx build` first" in one_error_line(_cli_train(tmp_path / "t4", None, "--variant", "cat"))
