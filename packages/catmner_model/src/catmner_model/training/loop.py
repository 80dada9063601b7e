"""The training loop: `train` (checks, DDP set-up), a run's set-up and resumption, one epoch of optimizer
steps, validation after each epoch, the epoch's checkpoint, and the final scoring of the best model.

The order of work fixes a seed's result: the model is initialised right after ``seed_everything(seed)``
(identical on every rank), the optimizer and schedule are built, then the RNGs are re-seeded per rank (dropout)
or restored from the checkpoint being resumed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from catmner_model.batching import to_device
from catmner_model.data import Tweet
from catmner_model.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    check_output,
    check_writable,
    load_checkpoint,
    save_best_model,
    save_checkpoint,
    write_json,
)
from catmner_model.training.config import (
    TrainConfig,
    TrainError,
    build_model_config,
    check_config,
    config_fingerprint,
    default_output,
)
from catmner_model.training.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    gather_objects,
    pack,
    rng_state,
    seed_everything,
    set_rng_state,
    setup_distributed,
    unpack,
    unwrap,
)
from catmner_model.training.inputs import (
    epoch_batches,
    example_lengths,
    load_label_words,
    load_splits,
    prepare_visual,
)
from catmner_model.training.optim import linear_schedule, make_optimizer
from catmner_model.training.record import peak_rss_mib, run_record


def run_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    examples: Sequence[Any],
    batches: Sequence[Sequence[int]],
    collate: Callable[[list[Any]], Any],
    config: TrainConfig,
    device: torch.device,
    desc: str,
    show: bool,
) -> float:
    """One pass of optimizer steps over ``batches``; returns the mean training loss."""
    from catmner_model.precision import autocast

    model.train()
    total, n = 0.0, 0
    bar = tqdm(batches, desc=desc, disable=not show, leave=False, dynamic_ncols=True)
    for idx in bar:
        batch = to_device(collate([examples[i] for i in idx]), device)
        with autocast(device, config.precision):
            out = model(batch, labels=True)
        loss = out.loss
        if not torch.isfinite(loss):
            raise TrainError(f"{desc}: loss became {loss.item()}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        total += loss.item()
        n += 1
        bar.set_postfix(loss=f"{total / n:.4f}")
    return total / max(1, n)


def evaluate_split(
    model: torch.nn.Module,
    tweets: Sequence[Tweet],
    all_examples: Sequence[Any],
    collate: Callable[[list[Any]], Any],
    batch_size: int,
    device: torch.device,
    info: DistInfo,
    desc: str,
    show: bool,
    precision: str = "fp32",
) -> tuple[dict[str, Any], list[list[Any]]]:
    """Predict ``tweets`` (sharded over ranks, gathered on all) and score them: ({lenient, strict}, predictions)."""
    from catmner_model.metrics import score_both
    from catmner_model.predict import predict_examples

    mine = list(range(info.rank, len(tweets), info.world_size))
    examples = [all_examples[i] for i in mine]
    preds = predict_examples(
        unwrap(model), examples, collate, batch_size, device, desc=desc, progress=show, precision=precision
    )
    merged: list[list[Any]] = [[] for _ in tweets]
    for part_idx, part_preds in gather_objects(info, (mine, preds)):
        for i, p in zip(part_idx, part_preds, strict=True):
            merged[i] = p
    both = score_both(tweets, merged)
    return {"lenient": both["conlleval"], "strict": both["strict"]}, merged


def _short(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(metrics[k], 4) for k in ("precision", "recall", "f1")} | {
        "per_type_f1": {t: round(v["f1"], 4) for t, v in metrics["per_type"].items()}
    }


def train(
    config: TrainConfig,
    *,
    data: dict[str, list[Tweet]] | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume) a run and return its run record (also written to OUTPUT/run.json).

    ``data`` optionally replaces splits ("train"/"valid"/"test" -> tweets), e.g. for data-efficiency runs or
    to overfit a handful of tweets. ``on_epoch_end(epoch, log_entry)`` is called on every rank after the
    epoch's checkpoint is complete (an exception there stops the run, as a kill would).
    """
    check_config(config)
    info = setup_distributed()
    try:
        return _train(config, info, data, on_epoch_end)
    finally:
        if info.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _Run:
    """The state of a run in progress (what the steps of `_train` share)."""

    config: TrainConfig
    info: DistInfo
    device: torch.device
    show: bool  # progress bars and notes (rank 0, not quiet)
    output: Path
    label_words: Any | None
    words_sum: str | None  # checksum of the label words, recorded in every checkpoint
    splits: dict[str, list[Tweet]]
    split_examples: dict[str, list[Any]]
    image_stats: dict[str, Any]
    model: Any = None
    collate: Any = None
    truncated: dict[str, Any] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)
    optimizer: Any = None
    scheduler: Any = None
    start_epoch: int = 0
    best_f1: float = -1.0
    best_epoch: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)


def _train(
    config: TrainConfig,
    info: DistInfo,
    data: dict[str, list[Tweet]] | None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
) -> dict[str, Any]:
    run = _start(config, info, data)
    net: torch.nn.Module = run.model
    if info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            run.model,
            device_ids=[run.device.index] if run.device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    for epoch in range(run.start_epoch, config.epochs):
        if run.log and run.log[-1].get("stopped_early"):  # a resumed run that had already stopped
            break
        entry = _epoch(run, net, epoch)
        barrier(info)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, entry)
    return _finish(run, data)


def _device(config: TrainConfig, info: DistInfo) -> torch.device:
    """This rank's device, with the thread count and determinism the config asks for."""
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = torch.device(f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu")
    # CPU kernels used here are deterministic for a fixed thread count; torch.use_deterministic_algorithms
    # is not called by default because importing it pulls in torch._dynamo (~10 s of start-up on this
    # machine). On a GPU, scatter-add kernels (embedding backward) are not: --deterministic makes GPU runs,
    # and a killed-then-resumed run, bit-identical (checked on an H200), at some speed cost.
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    return device


def _open_output(config: TrainConfig, info: DistInfo) -> tuple[Path, dict[str, Any] | None]:
    """The run directory and the state of the checkpoint to resume (None: a fresh run), checked on rank 0."""
    output = Path(config.output) if config.output else default_output(config)
    output = output.expanduser()
    checked: tuple[str, Any] = ("ok", None)
    if info.is_main:
        try:
            checked = ("ok", check_output(output, config))
        except TrainError as exc:
            checked = ("error", str(exc))
    status, prior = broadcast_object(info, checked)  # every rank fails together instead of hanging
    if status == "error":
        raise TrainError(prior)
    if info.is_main:
        check_writable(output)  # created at its first write, so a failed start leaves no empty folder
    return output, prior


def _start(config: TrainConfig, info: DistInfo, data: dict[str, list[Tweet]] | None) -> _Run:
    """Everything before the first epoch: run directory, label words, inputs, model, optimizer, resumption."""
    from catmner_model.families import create_model
    from catmner_model.predict import count_truncated

    device = _device(config, info)
    show = not config.quiet and info.is_main
    output, prior = _open_output(config, info)
    label_words = load_label_words(config)
    words_sum = getattr(label_words, "checksum", None)  # recorded in every checkpoint; resumes must match it
    if prior is not None and prior.get("label_words_checksum", words_sum) != words_sum:
        raise TrainError(
            f"{output}: this run started with label words {str(prior['label_words_checksum'])[:12]} but --labels "
            f"{config.labels} now gives {str(words_sum)[:12]}; to resume with the words it started with, pass "
            f"--labels {output / 'label_words.json'}, or start afresh with another --output"
        )
    splits = load_splits(config, data)
    _, split_examples, image_stats, feature_dim = prepare_visual(config, splits, info, show)
    run = _Run(
        config, info, device, show, output, label_words, words_sum, splits, split_examples, image_stats
    )

    seed_everything(config.seed)
    model_cfg = build_model_config(config, feature_dim)
    run.model = create_model(model_cfg, label_words if label_words is not None else ())
    run.model.to(device)
    run.collate = run.model.collator()
    if config.saliency_from_qk and prior is None:  # a resume loads the weights it had
        from catmner_model.vitals import start_saliency_at_qk

        try:
            start = start_saliency_at_qk(run.model, split_examples["train"][:256], config.eval_batch_size)
        except ValueError as exc:
            raise TrainError(f"--saliency-from-qk: {exc}") from None
        if show:
            tqdm.write(
                f"saliency scale starts at {', '.join(f'{m:.3g}' for m in start)} (|QK^T| / s per layer)"
            )
    run.truncated = {k: count_truncated(run.collate, (t.tokens for t in v)) for k, v in splits.items()}
    if info.is_main and any(c["words"] for c in run.truncated.values()):  # shown with -q as well: lost words
        tqdm.write(
            f"note: words past max_length pieces are never predicted: {run.truncated} (in log.json)",
            file=sys.stderr,
        )

    run.lengths = example_lengths(split_examples["train"], run.collate)
    steps_per_epoch = len(
        epoch_batches(run.lengths, config.batch_size, config.seed, 0, info, config.bucket_size)
    )
    total_steps = steps_per_epoch * config.epochs
    run.optimizer = make_optimizer(run.model, config, device)
    run.scheduler = linear_schedule(run.optimizer, int(config.warmup_ratio * total_steps), total_steps)
    seed_everything(config.seed + info.rank)  # dropout differs by rank; init above is the same everywhere
    if prior is not None:
        _resume(run, prior)
    return run


def _resume(run: _Run, prior: dict[str, Any]) -> None:
    """Load the checkpoint ``prior`` describes into the run: weights, optimizer, schedule, RNGs, progress."""
    rng = load_checkpoint(Path(prior["_folder"]), run.model, run.optimizer, run.scheduler)
    run.start_epoch, run.best_f1, run.best_epoch, run.log = (
        prior["epoch"],
        prior["best_f1"],
        prior["best_epoch"],
        prior["log"],
    )
    set_rng_state(rng[run.info.rank] if run.info.rank < len(rng) else rng[0])
    if run.show:
        tqdm.write(f"resuming {run.output} after epoch {run.start_epoch} (best valid F1 {run.best_f1:.2f})")


def _epoch(run: _Run, net: torch.nn.Module, epoch: int) -> dict[str, Any]:
    """Train one epoch, validate, keep the best model and write the epoch's checkpoint; returns its log entry."""
    config, info = run.config, run.info
    t0, c0 = time.perf_counter(), time.process_time()
    batches = epoch_batches(run.lengths, config.batch_size, config.seed, epoch, info, config.bucket_size)
    desc = f"epoch {epoch + 1}/{config.epochs}"
    examples = run.split_examples["train"]
    loss = run_epoch(
        net, run.optimizer, run.scheduler, examples, batches, run.collate, config, run.device, desc, run.show
    )
    t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
    due = (epoch + 1) % max(1, config.valid_every) == 0 or epoch + 1 == config.epochs
    valid = None
    if due:
        valid, _ = evaluate_split(
            net,
            run.splits["valid"],
            run.split_examples["valid"],
            run.collate,
            config.eval_batch_size,
            run.device,
            info,
            "valid",
            run.show,
            config.precision,
        )
    vitals = None
    cat = getattr(run.model.cfg, "family", "catmner") == "catmner"  # vital signs of CAT-MNER's layers only
    if valid is not None and config.vitals_tweets > 0 and cat and run.model.cfg.uses_image and info.is_main:
        from catmner_model.vitals import measure_vitals

        # what the refinement does on the first validation tweets (docs/model.md, "Vital signs")
        vitals = measure_vitals(
            run.model, run.split_examples["valid"][: config.vitals_tweets], config.eval_batch_size
        )
    t_total = time.perf_counter() - t0
    f1 = valid["lenient"]["f1"] if valid else None
    improved = f1 is not None and f1 > run.best_f1
    if improved:
        run.best_f1, run.best_epoch = f1, epoch + 1
    entry = {
        "epoch": epoch + 1,
        "loss": loss,
        "valid_lenient": _short(valid["lenient"]) if valid else None,  # None: not validated (valid_every)
        "valid_strict": _short(valid["strict"]) if valid else None,
        "best_epoch": run.best_epoch,
        "train_seconds": round(t_train, 3),
        "train_cpu_seconds": round(c_train, 3),  # process CPU time (all threads): robust to a busy machine
        "seconds": round(t_total, 3),
        "steps": len(batches),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "vitals": vitals,  # None: not validated, text variant or UMT, vitals_tweets 0 or not the main rank
    }
    reason = stop_reason(run.log + [entry], run.best_epoch, config.patience)
    if reason and epoch + 1 < config.epochs:  # in the checkpoint's log: a resumed run stops here too
        entry["stopped_early"] = reason
    run.log.append(entry)
    rngs = [unpack(b) for b in gather_objects(info, pack(rng_state()))]
    if info.is_main:
        _write_epoch(run, epoch, improved, rngs)
        if run.show:
            scores = f"valid F1 {f1:.2f} (strict {valid['strict']['f1']:.2f})" if valid else "not validated"
            tqdm.write(f"{desc}: loss {loss:.4f}  {scores}{'  *best*' if improved else ''}  {t_total:.1f}s")
            if entry.get("stopped_early"):
                tqdm.write(f"{entry['stopped_early']} (best epoch {run.best_epoch})")
    return entry


def stop_reason(log: Sequence[dict[str, Any]], best_epoch: int, patience: int | None) -> str | None:
    """Why early stopping ends a run after the last entry of ``log`` (None: go on). The count of validations
    without gain is read from the log, which every checkpoint holds, so a resumed run counts as it would have."""
    if patience is None:
        return None
    no_gain = sum(1 for e in log if e["epoch"] > best_epoch and e.get("valid_lenient") is not None)
    if no_gain < patience:
        return None
    return f"stopped early: no validation gain in {patience} validation{'s' if patience > 1 else ''}"


def _write_epoch(run: _Run, epoch: int, improved: bool, rngs: list[dict[str, Any]]) -> None:
    """Rank 0: the best model (if it improved), the label words, the epoch's checkpoint and the log."""
    output = run.output
    if improved:
        save_best_model(run.model, output, run.config)
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "epoch": epoch + 1,
        "best_f1": run.best_f1,
        "best_epoch": run.best_epoch,
        "log": run.log,
        "config_fingerprint": json.loads(json.dumps(config_fingerprint(run.config), default=str)),
        "world_size": run.info.world_size,
        "label_words_checksum": run.words_sum,
    }
    if run.label_words is not None:  # the words this run trains on, reusable with --labels on a resume
        write_json(output / "label_words.json", run.label_words.to_json())
    save_checkpoint(output, run.model, run.optimizer, run.scheduler, state, rngs)
    write_json(
        output / "log.json", {"image_stats": run.image_stats, "truncated": run.truncated, "epochs": run.log}
    )


def _finish(run: _Run, data: dict[str, list[Tweet]] | None) -> dict[str, Any]:
    """Reload the best model from disk, score it on valid and test, write and return the run record."""
    from catmner_model.families import load_pretrained
    from catmner_model.precision import resolve_precision

    config, info = run.config, run.info
    barrier(info)
    best = load_pretrained(run.output / "model", map_location=run.device)
    final_collate = best.collator()
    metrics = {}
    # a test split given empty is not scored (the benchmark's recipe search and cross-dataset runs score the
    # model themselves, or never on test): the record then has no "test" metrics
    for split in ("valid", "test") if run.splits["test"] else ("valid",):
        m, _ = evaluate_split(
            best,
            run.splits[split],
            run.split_examples[split],
            final_collate,
            config.eval_batch_size,
            run.device,
            info,
            split,
            run.show,
            config.precision,
        )
        metrics[split] = m
    record = run_record(
        config,
        best.cfg,
        run.splits,
        data,
        best_epoch=run.best_epoch,
        metrics=metrics,
        log=run.log,
        image_stats=run.image_stats,
        truncated=run.truncated,
        label_words=run.label_words,
        world_size=info.world_size,
        precision=resolve_precision(config.precision, run.device),
        model_dir=str(run.output / "model"),
        vitals=next((e.get("vitals") for e in run.log if e["epoch"] == run.best_epoch), None),
        stopped_epoch=run.log[-1]["epoch"] if run.log and run.log[-1].get("stopped_early") else None,
        stop_reason=run.log[-1].get("stopped_early") if run.log else None,
    ).to_json()
    if info.is_main:
        write_json(run.output / "run.json", record)
        if run.show:
            test = (
                f"test F1 {metrics['test']['lenient']['f1']:.2f} (strict {metrics['test']['strict']['f1']:.2f})"
                if "test" in metrics
                else "test not scored"
            )
            tqdm.write(
                f"best epoch {run.best_epoch}: valid F1 {metrics['valid']['lenient']['f1']:.2f}, {test}"
            )
    barrier(info)
    return record
