"""`catmner-bench run speed`: how fast catmner trains and predicts, beside the standard Hugging Face recipe.

Everything is measured in ONE process, alternating, on the same Twitter-2015 tweets, threads and text encoder,
so that load from other work on the machine falls on every system alike:

- systems: catmner TEXT (``lm-span``), CAT-MNER with caption tokens (``cat-caption``), CAT-MNER with 4x4 grid
  tokens (``cat-grid``: cached frozen image features; only a few tweet images exist here, so every tweet is
  given the features of one of them, cycled, and the figure is that of a fully illustrated dataset), and
  the standard Hugging Face recipe on the same encoder (``hf``: AutoModelForTokenClassification, BIO labels on
  each word's first subword, dynamic padding with DataCollatorForTokenClassification, fused AdamW, linear
  schedule, gradient clipping, as `transformers.Trainer` does by default);
- precisions: fp32, and bf16 autocast where the hardware has native bf16 (see catmner_model.precision.autocast);
- training: catmner steps through the trainer's own loop (`catmner_model.training.loop.run_epoch`) over the same
  batches for every system (the seeded, length-bucketed batches of a real epoch; the timed ones sit at evenly
  spaced quantiles of batch length). ``rounds`` rounds, each system once per round (order rotated); a
  system's step time is the median over rounds of its mean step time; the ratio to HF is the median of the
  per-round ratios. Seconds per Twitter-2015 epoch = step time x ceil(4000 / batch size);
- FLOPs: forward + backward of the timed batches counted with `torch.utils.flop_counter.FlopCounterMode`
  (matrix products and convolutions; the optimizer's elementwise work is not counted), divided by the step
  time = achieved GFLOP/s, beside the machine's matmul peak: a large square GEMM timed in the same run, fp32
  and bf16, at the start and at the end. Wall-clock and process-CPU versions of both are kept: on a busy
  machine the CPU-time ratio is the steadier one;
- cost growth (CAT-MNER caption, fp32): step time against words per tweet, caption word pieces and the
  number of label words;
- prediction: batched tweets/s and one tweet at a time (ms), in this warm process, through `Predictor` (the
  saved model directory, as a user loads it) and the HF model's forward + argmax; and the start-up of
  `catmner predict MODEL --text ...` (a fresh process: wall time to its first line of output).

The record is a benchmark run record (records.py) with the figures in ``extra["speed"]``;
`catmner_bench.report.speed` renders it (the report imports nothing of this package, which runs the planner). ``python -m catmner_bench.speed RECORDS_DIR docs/model.md`` rewrites the generated block of
docs/model.md from the latest record.

The package, by responsibility: `sizes.py` (sizes per profile, targets, schema), `flops.py` (the clock,
FLOP counting, GEMM peaks), `workload.py` (the timed batches and synthetic inputs), `systems.py` (the
catmner systems and settings), `hf_recipe.py` (the Hugging Face comparison), `measure.py` (the run and its
training timings), `growth.py` (cost growth), `prediction.py` (prediction and start-up timings). Every name is importable from ``catmner_bench.speed`` as before the split.
"""

from __future__ import annotations

from catmner_bench.speed.flops import Clock, count_flops, gemm_model_shapes, gemm_peak, precision_dtype
from catmner_bench.speed.growth import measure_growth
from catmner_bench.speed.hf_recipe import HF_LABELS, HFSystem
from catmner_bench.speed.measure import (
    checks,
    conditions,
    epoch_sample,
    load_label_words,
    measure,
    read_tweets,
    run_speed_experiment,
    speed_config,
    time_prediction,
    time_training,
    timed_batches,
    timed_settings,
    train_row,
)
from catmner_bench.speed.prediction import measure_prediction, measure_startup
from catmner_bench.speed.sizes import DATASET, SIZES, SPEED_SCHEMA, SYSTEM_LABELS, TARGETS, SpeedSize
from catmner_bench.speed.systems import CatmnerSystem, Setting
from catmner_bench.speed.workload import frequent_words, label_word_set, quantile_batches, synthetic_tweets

__all__ = [
    "DATASET",
    "HF_LABELS",
    "SIZES",
    "SPEED_SCHEMA",
    "SYSTEM_LABELS",
    "TARGETS",
    "CatmnerSystem",
    "Clock",
    "HFSystem",
    "Setting",
    "SpeedSize",
    "checks",
    "conditions",
    "count_flops",
    "epoch_sample",
    "frequent_words",
    "gemm_model_shapes",
    "gemm_peak",
    "label_word_set",
    "load_label_words",
    "measure",
    "measure_growth",
    "measure_prediction",
    "measure_startup",
    "precision_dtype",
    "quantile_batches",
    "read_tweets",
    "run_speed_experiment",
    "speed_config",
    "synthetic_tweets",
    "time_prediction",
    "time_training",
    "timed_batches",
    "timed_settings",
    "train_row",
]
