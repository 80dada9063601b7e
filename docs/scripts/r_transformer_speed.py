"""Seconds per training step (forward + backward) of the R-Transformer paths, interleaved in one process.

A batch of the first 16 Twitter-2015 training tweets (every third one without an image, random 16 x 1280 grid
features for the others), 72 label words, gates opened (bias 0.3) so the refined attention and the
C-Transformer run as after the first steps of training; train mode (dropout on). Prints the median and the
minimum over REPS steps per path; the paths take turns, so machine load hits them alike.

    CATMNER_DATA=../shared/data uv run python docs/scripts/r_transformer_speed.py
    env: TEXT_ENCODER (minilm | mpnet | HF name/path), VARIANT (cat), PATHS (loop,intercept), REPS (15),
         THREADS (1). A checkout without r_transformer times its only path ("loop").
"""

import os
import statistics
import time
from dataclasses import fields

import torch
from catmner_model.batching import Example
from catmner_model.config import CatMnerConfig
from catmner_model.data import load_split
from catmner_model.model import create_model

torch.set_num_threads(int(os.environ.get("THREADS", "1")))
reps = int(os.environ.get("REPS", "15"))
variant = os.environ.get("VARIANT", "cat")
encoder = os.environ.get("TEXT_ENCODER", "minilm")
tweets = load_split("twitter2015", "train", os.environ.get("CATMNER_DATA"))[:16]
g = torch.Generator().manual_seed(0)
ex = [Example(t, torch.randn(16, 1280, generator=g) if i % 3 else None) for i, t in enumerate(tweets)]
words = (
    "person singer actor player president city country river street company team band university club party "
    "festival game movie song album animal dog car phone product event war election award hotel airport "
    "church school hospital bank station park mountain island lake bridge museum stadium theatre restaurant "
    "brand device vehicle ship train plane bird horse cat food drink book show series tournament match cup "
    "league season concert tour holiday day night storm earthquake disease"
).split()
has_paths = "r_transformer" in {f.name for f in fields(CatMnerConfig)}
paths = os.environ.get("PATHS", "loop,intercept").split(",") if has_paths else ["loop"]
models = {}
for p in paths:
    torch.manual_seed(0)
    kw = {"r_transformer": p} if has_paths else {}
    m = create_model("minilm", words, variant=variant, text_encoder=encoder, **kw).train()
    with torch.no_grad():
        for gate in [*(m.gates_i2t or []), *(m.gates_t2i or [])]:
            gate.proj.bias.fill_(0.3)
    models[p] = m
batch = models[paths[0]].collator()(ex)
print(
    f"{encoder} {variant}: batch {tuple(batch.input_ids.shape)}, {len(words)} label words, "
    f"{torch.get_num_threads()} thread(s)",
    flush=True,
)


def step(m):
    m.zero_grad(set_to_none=True)
    out = m(batch, labels=True)
    out.loss.backward()


for p in paths:  # warm-up
    step(models[p])
times = {p: [] for p in paths}
for _ in range(reps):
    for p in paths:
        t = time.perf_counter()
        step(models[p])
        times[p].append(time.perf_counter() - t)
for p in paths:
    print(f"{p}: median {statistics.median(times[p]):.3f} s, min {min(times[p]):.3f} s per step (n={reps})")
