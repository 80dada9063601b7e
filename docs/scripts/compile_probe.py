# ruff: noqa: E402  (the thread environment is set before torch is imported)
"""Probe: does torch.compile (inductor, CPU, one thread) speed up a CAT-MNER (caption) training step?

    uv run python docs/scripts/compile_probe.py layer   # the layer step compiled (dynamic shapes), paired with eager

Builds the speed benchmark's CAT-MNER (caption) system (MiniLM, the textual label words, 12 Twitter-2015 batches of
16), compiles `CatMner._r_layer` (the body of the model's own layer loop) with `dynamic=True`, and times the two
alternately over two rounds: the median wall and CPU time per step, and the compiled / eager ratio per batch.
Needs a C++ compiler for inductor. Data: /work/shared/data, or $CATMNER_DATA."""

import dataclasses
import json
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
import torch

torch.set_num_threads(1)
import torch._dynamo
import torch._inductor.config

torch._inductor.config.compile_threads = 1
from pathlib import Path

MODE = sys.argv[1] if len(sys.argv) > 1 else ""
N_BATCHES = 12
t_start = time.perf_counter()

from catmner_bench.profiles import PROFILES
from catmner_bench.runner import RunContext
from catmner_bench.speed.flops import Clock
from catmner_bench.speed.measure import load_label_words, preload, read_tweets
from catmner_bench.speed.sizes import SIZES
from catmner_bench.speed.systems import CatmnerSystem, Setting
from catmner_bench.speed.workload import quantile_batches
from catmner_model.training.distributed import DistInfo, seed_everything
from catmner_model.training.inputs import epoch_batches, example_lengths

prof = dataclasses.replace(PROFILES["quick"], num_threads=1)
ctx = RunContext(
    output=Path(os.environ.get("TMPDIR", "/tmp")) / "compile_probe",
    profile=prof,
    data_dir=Path(os.environ.get("CATMNER_DATA", "/work/shared/data")),
    quiet=True,
)
preload()
torch.set_num_threads(1)
full_train, train, test = read_tweets(ctx, SIZES["quick"])
lw = load_label_words(ctx, prof.labels_textual)
seed_everything(prof.seeds[0])
sysm = CatmnerSystem("cat-caption", ctx, train, test[:1], lw, torch.device("cpu"))
lens = example_lengths(sysm.train_examples, sysm.collate)
epoch = epoch_batches(lens, prof.batch_size, prof.seeds[0], 0, DistInfo())
batches = quantile_batches(epoch, lens, N_BATCHES)
model = sysm.model
print(
    f"setup {time.perf_counter() - t_start:.1f}s; threads={torch.get_num_threads()}; train tweets={len(train)}; "
    f"label_ids={tuple(model.label_ids.shape)}; layers={len(model.layers)}; "
    f"intercept={model._intercept}",
    flush=True,
)
shapes = []
for b in batches:
    bt = sysm.collate([sysm.train_examples[i] for i in b])
    rows = model._real_rows(
        torch.cat([bt.attention_mask, bt.caption_mask], 1)
        if bt.caption_mask is not None
        else bt.attention_mask,
        bt.attention_mask,
    )
    shapes.append(
        (
            tuple(bt.input_ids.shape),
            tuple(bt.caption_ids.shape) if bt.caption_ids is not None else None,
            rows is not None,
        )
    )
print("batch shapes (input_ids, caption_ids, packed):", shapes, flush=True)

eager_r_layer = model._r_layer
fwd_model = model
if MODE != "layer":
    raise SystemExit("usage: compile_probe.py layer")
torch._dynamo.config.recompile_limit = (
    64  # one graph per layer index (and a few variants): over the default 8
)
model._r_layer = torch.compile(model._r_layer, dynamic=True)  # instance attribute: encode's loop calls it

from catmner_model.training import loop as loop_mod

setting = Setting("cat-caption", "fp32")


def step(idx):
    with Clock() as c:
        loss = loop_mod.run_epoch(
            fwd_model,
            sysm.optimizers[True],
            sysm.schedulers[True],
            sysm.train_examples,
            [idx],
            sysm.collate,
            dataclasses.replace(sysm.config, precision="fp32"),
            torch.device("cpu"),
            "probe",
            False,
        )
    return c.wall, c.cpu, loss


from torch._dynamo.utils import counters


def snap():
    return {
        "unique_graphs": counters["stats"]["unique_graphs"],
        "frames_ok": counters["frames"]["ok"],
        "frames_total": counters["frames"]["total"],
        "graph_breaks": sum(counters["graph_break"].values()),
    }


comp_r_layer = model._r_layer


def use(which):
    model._r_layer = comp_r_layer if which == "compiled" else eager_r_layer


t0 = time.perf_counter()
for which in ("compiled", "eager"):
    use(which)
    for idx in batches[:2]:
        print("warm", which, step(idx)[:2], flush=True)
print("warm-up (warm inductor cache) s", time.perf_counter() - t0, snap(), flush=True)
walls = {"eager": [], "compiled": []}
cpus = {"eager": [], "compiled": []}
for r in range(2):
    for j, idx in enumerate(batches):
        order = ("eager", "compiled") if (j + r) % 2 == 0 else ("compiled", "eager")
        for which in order:
            use(which)
            w, c, _ = step(idx)
            walls[which].append(w)
            cpus[which].append(c)
for k in walls:
    print(
        f"{k}: median wall {statistics.median(walls[k]) * 1e3:.1f} ms, median cpu {statistics.median(cpus[k]) * 1e3:.1f} ms, n={len(walls[k])}"
    )
ratios = [c / e for c, e in zip(walls["compiled"], walls["eager"], strict=True)]
cr = [c / e for c, e in zip(cpus["compiled"], cpus["eager"], strict=True)]
print(
    f"paired compiled/eager: wall median {statistics.median(ratios):.3f} (min {min(ratios):.3f} max {max(ratios):.3f}); cpu median {statistics.median(cr):.3f}"
)
print("final", snap(), "total", time.perf_counter() - t_start, flush=True)
print(json.dumps({"walls": walls, "cpus": cpus}))
