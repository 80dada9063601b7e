"""DDP: `train()` runs unchanged in two CPU processes (gloo, torchrun's environment variables), the ranks stay
in sync and only rank 0 writes the run directory."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, root: str) -> None:
    # exactly what torchrun sets for each process
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        CATMNER_HOME=str(Path(root) / "home"),
    )
    torch.set_num_threads(1)
    from catmner_model.data import load_split
    from catmner_model.training.config import TrainConfig
    from catmner_model.training.loop import train

    tweets = load_split("twitter2015", "train", DATA)[
        :10
    ]  # 10 tweets, batch 2 -> 3 steps per rank (1 padded)
    valid = load_split("twitter2015", "valid", DATA)[:7]  # odd: ranks predict 4 and 3 tweets, gathered
    digests: list[str] = []

    def on_epoch_end(epoch: int, entry: dict) -> None:
        digests.append(json.dumps(entry["valid_lenient"], sort_keys=True))

    config = TrainConfig(
        labels=str(Path(root) / "labels.json"),
        text_encoder="tiny",
        image_encoder="tiny",
        epochs=2,
        lr=3e-3,
        batch_size=2,
        output=str(Path(root) / "run"),
        quiet=True,
        num_threads=1,
    )
    record = train(config, data={"train": tweets, "valid": valid, "test": valid}, on_epoch_end=on_epoch_end)
    out = {
        "world_size": record["world_size"],
        "metrics": record["metrics"],
        "valid_per_epoch": digests,
        "losses": [e["loss"] for e in record["epochs"]],
    }
    (Path(root) / f"rank{rank}.json").write_text(json.dumps(out, sort_keys=True))


def _param_worker(rank: int, world: int, port: int, root: str) -> None:
    """Train and dump this rank's own final parameters (not rank 0's files) for an exact comparison."""
    import catmner_model.training.loop as T  # where the loop looks run_epoch up

    captured = {}
    orig = T.run_epoch

    def spy(model, *args, **kwargs):
        loss = orig(model, *args, **kwargs)
        captured["state"] = {k: v.detach().clone() for k, v in T.unwrap(model).state_dict().items()}
        return loss

    T.run_epoch = spy
    _worker(rank, world, port, root)
    torch.save(captured["state"], Path(root) / f"params{rank}.pt")


def test_two_gloo_processes_stay_in_sync(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"person": ["person"], "location": ["city", "town"]}))
    mp.start_processes(
        _param_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    p0 = torch.load(tmp_path / "params0.pt", weights_only=True)
    p1 = torch.load(tmp_path / "params1.pt", weights_only=True)
    assert p0.keys() == p1.keys()
    assert all(torch.equal(p0[k], p1[k]) for k in p0)  # DDP kept every parameter identical
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world_size"] == 2
    assert r0["valid_per_epoch"] == r1["valid_per_epoch"] and r0["metrics"] == r1["metrics"]
    assert r0["losses"] != r1["losses"]  # each rank saw its own shard
    run = tmp_path / "run"
    assert (run / "run.json").exists() and (run / "model" / "model.safetensors").exists()
    assert json.loads((run / "checkpoint.json").read_text())["dir"] == "ckpt-epoch-0002"
    assert not list(run.glob(".*tmp*"))  # no half-written leftovers
    # the checkpoint holds one RNG state per rank so a resumed DDP run continues each rank's stream
    blob = torch.load(run / "ckpt-epoch-0002" / "trainer.pt", weights_only=True)
    assert len(blob["rng"]) == 2
    # and the trained parameters equal those rank 0 checkpointed
    from safetensors.torch import load_file

    ck = load_file(str(run / "ckpt-epoch-0002" / "model.safetensors"))
    assert all(torch.equal(ck[k], p0[k]) for k in ck)
