"""Training of CAT-MNER models: the loop, its resumable checkpoints, DDP plumbing and the run record.

`train(TrainConfig(...))` reads a benchmark's splits, resolves the label words through kb_expand, precomputes
frozen grid features once (FeatureCache; with ``finetune_image_encoder`` the model instead runs its image
encoder on each batch's pixels and trains it at ``encoder_lr``), then runs AdamW with linear warm-up/decay over length-bucketed,
seeded batches, validates each epoch (lenient F1 on the validation split; test is never looked at until the
end), keeps the best model in ``OUTPUT/model`` and writes an atomic checkpoint after every epoch. Rerunning
the same config on the same OUTPUT resumes and ends bit-identical to an uninterrupted run (on CPU).

Output directory layout::

    OUTPUT/model/              best model so far (CatMner.save_pretrained; loads with nothing else)
    OUTPUT/checkpoint.json     pointer to the latest complete checkpoint directory (replaced atomically)
    OUTPUT/ckpt-epoch-NNNN/    model.safetensors, trainer.pt (optimizer, scheduler, RNG; weights_only), state.json
    OUTPUT/log.json            one entry per epoch: loss, validation metrics, seconds
    OUTPUT/run.json            the run record: config, seed, metrics valid/test, timings, checksums, git commit

Under ``torchrun`` every rank runs this same function: a DistributedSampler shards the (identically seeded)
epoch permutation, gradients are averaged by DDP, validation predictions are gathered on every rank, and
only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import random
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from catmner_model.atomic import atomic_write_json, write_failure, write_hint
from catmner_model.batching import to_device  # noqa: F401  (re-exported: used here and by callers)
from catmner_model.data import (
    Tweet,
    catmner_home,
    load_split,
    resolve_data_dir,
    resolve_image_dir,
)
from catmner_model.errors import CatmnerError
from catmner_model.provenance import environment_info, git_info

CHECKPOINT_FORMAT = "catmner-train-checkpoint"
CHECKPOINT_VERSION = 1
RUN_RECORD_SCHEMA = "catmner-run/1"
TRAINING_SIDECAR = "training.json"  # in a model directory: image encoder + training config (optional file)
LABEL_WORD_VARIANTS = ("cat", "i2t", "t2i")  # the variants whose attention label words refine
# config fields that do not change the result: they may differ between a run and its resumption
_NON_RESULT_FIELDS = ("output", "quiet", "data_dir", "image_dir", "num_threads", "feature_cache")


class TrainError(CatmnerError):
    """A training run that cannot start or resume; the message is one line for the user."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint and in the run record)."""

    dataset: str = "twitter2015"  # benchmark: twitter2015 | twitter2017
    labels: str | None = "textual"  # label words: kb source name, build id or JSON file (None: text/mm only)
    db: str | None = None  # kb store for `labels` (default: kb_expand's $KBX_DB / $CATMNER_HOME/kb.sqlite)
    text_encoder: str | None = None  # HF name/path or named config ("tiny"); None: offline MiniLM default
    image_encoder: str = "efficientnet-lite0"  # efficientnet-lite0 | open_clip:<model>:<tag> | tiny | none
    variant: str = "cat"  # cat (refined I2T+T2I) | mm (no refinement) | i2t | t2i | text (no image)
    # train the image encoder with the model (at encoder_lr; meant for GPUs): the model reads the grid-cell
    # pixels of every image at each step instead of cached frozen features
    finetune_image_encoder: bool = False
    # visual tokens: grid (image encoder over the 4x4 grid) | caption (the image's caption) | grid+caption
    visual: str = "grid"
    captions: str | None = None  # caption file or folder (default $CATMNER_CAPTIONS, data_dir/captions/)
    captioner: str | None = None  # HF image-to-text model captioning images that have no caption
    knowledge: str | None = None  # a second text segment per tweet: "pgim" (data_dir/pgim/<dataset>_pgim.zip)
    epochs: int = 10  # passes over the training split
    lr: float = 5e-4  # peak learning rate of the new layers (paper: 5e-4)
    encoder_lr: float = 5e-5  # peak learning rate of the pretrained text encoder
    weight_decay: float = 0.01  # AdamW decay (never on biases and norm weights)
    warmup_ratio: float = 0.1  # fraction of all optimizer steps spent warming up linearly
    max_grad_norm: float = 1.0  # gradient clipping (0: off)
    batch_size: int = 16  # tweets per optimizer step (per process under DDP)
    eval_batch_size: int = 64  # tweets per forward at validation/test time
    bucket_size: int = 50  # batches per length bucket (sorted within, shuffled across)
    seed: int = 42  # seeds init, shuffling, dropout, subsampling
    max_train: int | None = None  # use a random subset of this many training tweets (quick runs, Figure 3)
    max_eval: int | None = None  # use the first N validation/test tweets (quick runs, benchmarks)
    data_dir: str | None = None  # folder with twitter2015/ twitter2017/ (default $CATMNER_DATA)
    image_dir: str | None = None  # folder with <dataset>_images/ (default $CATMNER_IMAGES, data_dir/...)
    feature_cache: str | None = None  # grid-feature cache root (default $CATMNER_HOME/features)
    output: str | None = None  # run directory (default $CATMNER_HOME/runs/<dataset>-<variant>-seed<seed>)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # extra CatMnerConfig fields
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    deterministic: bool = False  # GPU: deterministic kernels, so runs and resumed runs are bit-identical
    # fp32 | bf16 (autocast around forward passes) | auto (bf16 where the hardware has it natively); precision.py
    precision: str = "fp32"
    quiet: bool = False  # no progress bars


# ----------------------------------------------------------------------------------------------------------
# small utilities


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written directory ``tmp`` to ``final``, replacing any previous one."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def caught_writes(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a function writing into a run directory (its first Path argument): a read-only target, a full
    disk or a refused permission becomes one TrainError line; its half-written temp folders are removed
    (complete files and the last checkpoint are never touched before their replacement is complete)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            reason = write_failure(exc)
            if reason is None:
                raise
            target = next((a for a in args if isinstance(a, Path)), None)
            if target is not None and target.is_dir():
                for tmp in (target / ".model.tmp", *target.glob(".ckpt-epoch-*.tmp")):
                    shutil.rmtree(tmp, ignore_errors=True)
            where = getattr(exc, "filename", None) or target
            raise TrainError(
                f"{where}: cannot write ({reason}); {write_hint(reason)}: the last complete checkpoint is intact"
            ) from None

    return wrapper


def check_writable(output: Path) -> None:
    """Fail before any work when the run directory could not be written. Nothing is created here: the
    directory is made when its first file is written."""
    probe = output
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise TrainError(f"{probe}: is a file, not a directory; choose another --output")
    if not os.access(probe, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
        reason = "read-only file system" if read_only else "permission denied"
        raise TrainError(f"{probe}: cannot write ({reason}); {write_hint(reason)}")


_write_json = caught_writes(atomic_write_json)


def config_fingerprint(config: TrainConfig) -> dict[str, Any]:
    """The config fields that determine the result (compared on resume)."""
    d = dataclasses.asdict(config)
    for name in _NON_RESULT_FIELDS:
        d.pop(name, None)
    return d


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """All RNG states, in a form torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(_tuplify(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _pack(obj: Any) -> bytes:
    """torch.save to bytes (tensors travel through all_gather_object safely as plain bytes)."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _unpack(data: bytes) -> Any:
    import io

    return torch.load(io.BytesIO(data), weights_only=True)


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, list | tuple) else x


# ----------------------------------------------------------------------------------------------------------
# distributed plumbing


@dataclass
class DistInfo:
    """Where this process sits in a torchrun job (world_size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False  # we called init_process_group and must destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed() -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    made = False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        made = True
    return DistInfo(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, initialised_here=made
    )


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj``, on every rank (a one-element list without DDP)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ----------------------------------------------------------------------------------------------------------
# batching


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, info: DistInfo, bucket_size: int = 50
) -> list[list[int]]:
    """This rank's batches (lists of example indices) for one epoch.

    The epoch permutation comes from a DistributedSampler seeded with ``seed`` and ``epoch`` (identical on all
    ranks; each rank takes its shard, padded so that all ranks get the same number of examples). Within a
    rank, examples are cut into buckets of ``bucket_size`` batches, sorted by length inside a bucket (so a batch
    pads little) and the batches are shuffled with a generator seeded by (seed, epoch, rank).
    """
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(len(lengths)), num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    order = list(sampler)
    chunk = max(1, batch_size * bucket_size)
    batches: list[list[int]] = []
    for i in range(0, len(order), chunk):
        bucket = sorted(order[i : i + chunk], key=lambda j: lengths[j])
        batches.extend(bucket[k : k + batch_size] for k in range(0, len(bucket), batch_size))
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1009 + info.rank)
    perm = torch.randperm(len(batches), generator=g).tolist()
    return [batches[p] for p in perm]


def example_lengths(examples: Sequence[Any], collate: Any) -> list[int]:
    """The text length of each example in word pieces (what a batch pads to; `epoch_batches` sorts by it).

    Word counts would pad a quarter of the text positions of Twitter-2015 batches (a URL is ~16 pieces, an
    emoji one); word pieces pad ~2%. A second text segment (PGIM knowledge) counts too."""
    out = []
    for ex in examples:
        ids, _ = collate.encode_words(ex.tweet.tokens)
        if getattr(collate, "use_context", False):
            ids = ids + collate.context_pieces(ex.context or [], collate.limit - len(ids))
        out.append(len(ids))
    return out


def make_optimizer(
    model: torch.nn.Module, config: TrainConfig, device: torch.device, fused: bool | None = None
) -> torch.optim.AdamW:
    """AdamW over `param_groups`; ``fused`` (default: where torch has a fused kernel for the device) runs one
    pass over each tensor instead of ~10 elementwise ops per parameter: the same update (Hugging Face's
    Trainer defaults to it), rounded differently in the last bits."""
    if fused is None:
        fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(param_groups(model, config), lr=config.lr, fused=fused or None)


def linear_schedule(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 over ``warmup`` steps, then linear decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return step / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def param_groups(model: torch.nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: (pretrained encoder | new layers) x (decay | no decay on biases, norms, 1-d tensors)."""
    kinds = {id(p): kind for kind, params in model.parameter_groups().items() for p in params}
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = kinds.get(id(p), "new")
        no_decay = p.ndim < 2 or name.endswith("bias") or "norm" in name.lower()
        groups.setdefault((kind, no_decay), []).append(p)
    return [
        {
            "params": params,
            "lr": config.encoder_lr if kind == "encoder" else config.lr,
            "weight_decay": 0.0 if no_decay else config.weight_decay,
            "name": f"{kind}{'-nodecay' if no_decay else ''}",
        }
        for (kind, no_decay), params in sorted(groups.items())
    ]


# ----------------------------------------------------------------------------------------------------------
# data, label words and image features


def load_label_words(config: TrainConfig) -> Any | None:
    """The LabelWords of ``config.labels`` (None when the variant needs none and none were given)."""
    if config.labels is None or config.labels == "":
        if config.variant in ("cat", "i2t", "t2i"):
            raise TrainError(f"variant {config.variant!r} refines attention with label words: pass --labels")
        return None
    try:
        from kb_expand import load_label_words as kb_load
    except ImportError:  # older kb_expand without the top-level re-export
        from kb_expand.labelwords import load_label_words as kb_load

    lw = kb_load(config.labels, db=config.db)
    if not lw.words():
        raise TrainError(f"label-word set {config.labels!r} is empty: build or choose another one (--labels)")
    return lw


def _subsample(tweets: list[Tweet], n: int | None, seed: int) -> list[Tweet]:
    if n is None or n >= len(tweets):
        return tweets
    idx = sorted(random.Random(seed).sample(range(len(tweets)), n))
    return [tweets[i] for i in idx]


def load_splits(config: TrainConfig, data: dict[str, list[Tweet]] | None = None) -> dict[str, list[Tweet]]:
    """train / valid / test tweets of ``config.dataset`` (or the given ``data``), subsampled as configured."""
    splits: dict[str, list[Tweet]] = {}
    for split in ("train", "valid", "test"):
        tweets = (data or {}).get(split)
        if tweets is None:
            tweets = load_split(config.dataset, split, config.data_dir)
        splits[split] = list(tweets)
    splits["train"] = _subsample(splits["train"], config.max_train, config.seed)
    if config.max_eval is not None:
        splits["valid"] = splits["valid"][: config.max_eval]
        splits["test"] = splits["test"][: config.max_eval]
    for split, tweets in splits.items():
        empty = [t for t in tweets if not t.tokens]
        if empty:
            raise TrainError(f"{empty[0].path}:{empty[0].line}: empty tweet in the {split} split")
    if not splits["train"]:
        raise TrainError("no training tweets")
    return splits


def effective_visual(config: TrainConfig) -> str:
    """The visual source a run's model reads: "none" for the text variant, else ``config.visual``."""
    return "none" if config.variant == "text" else config.visual


def prepare_visual(
    config: TrainConfig, splits: dict[str, list[Tweet]], info: DistInfo, progress: bool
) -> tuple[Any, dict[str, list[Any]], dict[str, Any], int | None]:
    """The run's `VisualSource` and the model inputs of every split, built once.

    Grid: precompute the frozen grid features of every tweet image once (with ``finetune_image_encoder``
    there is no cache: the model encodes each batch's pixels itself). Caption: read the caption file. PGIM
    knowledge: align it to the tweets. Returns (source, examples per split, stats for the run log, the grid
    feature width F or None).
    """
    from catmner_model.visual import (
        HFCaptioner,
        VisualSource,
        build_extractor,
        feature_cache_root,
        read_captions,
        read_pgim,
        resolve_captions,
        resolve_pgim,
        uses_caption,
        uses_grid,
    )

    visual = effective_visual(config)
    source = VisualSource(visual=visual, dataset=config.dataset)
    all_tweets = list({id(t): t for split in ("train", "valid", "test") for t in splits[split]}.values())
    use_grid = uses_grid(visual) and config.image_encoder not in ("none", "")
    stats: dict[str, Any] = {"visual": visual, "encoder": config.image_encoder if use_grid else None}
    feature_dim = None
    if use_grid:
        from catmner_model.vision import FeatureCache, load_image_safely

        image_dir = resolve_image_dir(config.image_dir, config.data_dir)
        finetune = config.finetune_image_encoder
        extractor = None if finetune else build_extractor(config.image_encoder)
        source.image_dir, source.files = image_dir, finetune
        if extractor is not None:
            source.cache = FeatureCache(
                feature_cache_root(config.feature_cache), extractor, memory_items=2048
            )
            feature_dim = int(extractor.feature_dim)
        paths = source.image_paths(all_tweets)
        if source.cache is None:  # fine-tuning: decode each image once here, only to count the unusable ones
            n_unreadable = sum(1 for p in paths if not load_image_safely(p).ok) if info.is_main else None
        else:
            if info.is_main and paths:
                stats["precompute"] = source.cache.precompute(paths, progress=progress)
            barrier(info)
            n_unreadable = sum(1 for p in paths if source.cache.get(p) is None)
        stats.update(
            finetune=finetune,
            image_dir=str(image_dir) if image_dir else None,
            tweets=len(all_tweets),
            images_found=len(paths),
            tweets_without_image=len(all_tweets)
            - len({id(t) for t in all_tweets if source.image_paths([t])}),
            unreadable_images=n_unreadable,
        )
    if uses_caption(visual):
        path = resolve_captions(config.dataset, config.captions, config.data_dir)
        source.captions = read_captions(path) if path is not None else {}
        if config.captioner:
            source.captioner = HFCaptioner(config.captioner)
            source.image_dir = source.image_dir or resolve_image_dir(config.image_dir, config.data_dir)
        stats["caption_file"] = str(path) if path is not None else None
    if config.knowledge:
        zpath = resolve_pgim(config.dataset, config.data_dir)
        stats["knowledge_file"] = str(zpath)
        missing = {}
        for split in ("train", "valid", "test"):
            missing[split] = source.add_knowledge(splits[split], read_pgim(zpath, split))
        stats["tweets_without_knowledge"] = missing
    examples = {split: source.examples(splits[split]) for split in ("train", "valid", "test")}
    if uses_caption(visual):
        unique = {id(ex.tweet): ex for v in examples.values() for ex in v}.values()  # each tweet once
        n = len(unique)
        with_caption = sum(ex.caption is not None for ex in unique)
        stats.update(
            tweets=stats.get("tweets", len(all_tweets)),
            tweets_with_caption=with_caption,
            tweets_without_caption=n - with_caption,
            captioned_by_model=source.stats.captioned_by_model,
        )
    stats.setdefault("tweets", len(all_tweets))
    return source, examples, stats, feature_dim


# ----------------------------------------------------------------------------------------------------------
# model


def build_model_config(config: TrainConfig, feature_dim: int | None) -> Any:
    """The CatMnerConfig of a run: a bundled config ("minilm", "tiny") or the minilm defaults with another text
    encoder (HF name/path), plus variant, image feature width and ``model_overrides``."""
    from catmner_model.modeling import list_configs, load_config

    name = config.text_encoder or "minilm"
    overrides: dict[str, Any] = {"variant": config.variant}
    if name not in list_configs():
        overrides["text_encoder"] = name
        name = "minilm"
    if feature_dim is not None:
        overrides["image_feature_dim"] = feature_dim
    if config.finetune_image_encoder and config.variant != "text":
        overrides["trainable_image_encoder"] = config.image_encoder
    visual = effective_visual(config)
    overrides["visual"] = "grid" if visual == "none" else visual  # the text variant ignores it
    if "grid" in visual.split("+") and config.image_encoder not in ("none", ""):
        overrides["image_encoder"] = config.image_encoder
    if config.knowledge:
        overrides["text_context"] = config.knowledge
    overrides.update(config.model_overrides)
    try:
        return load_config(name, **overrides)
    except ValueError as exc:
        raise TrainError(f"model config: {exc}") from None


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------------------------------------
# checkpoints


def _checkpoint_pointer(output: Path) -> Path:
    return output / "checkpoint.json"


def read_checkpoint_state(output: Path) -> tuple[Path, dict[str, Any]] | None:
    """The latest complete checkpoint of a run directory: (its folder, its state.json), or None."""
    pointer = _checkpoint_pointer(output)
    if not pointer.exists():
        return None
    try:
        ref = json.loads(pointer.read_text(encoding="utf-8"))
        folder = output / ref["dir"]
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainError(f"{pointer}: not a readable catmner checkpoint ({exc})") from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{folder}: not a catmner training checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise TrainError(
            f"{folder}: checkpoint version {state.get('version')} is not supported (expected {CHECKPOINT_VERSION})"
        )
    if "/" in ref["dir"] or ref["dir"].startswith("."):
        raise TrainError(f"{pointer}: bad checkpoint directory name {ref['dir']!r}")
    return folder, state


@caught_writes
def save_checkpoint(
    output: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    rng_states: list[dict[str, Any]],
) -> Path:
    """Write a complete checkpoint folder, then point checkpoint.json at it (atomic), then drop older ones."""
    from safetensors.torch import save_model

    name = f"ckpt-epoch-{state['epoch']:04d}"
    tmp = output / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_model(unwrap(model), str(tmp / "model.safetensors"))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_states},
        tmp / "trainer.pt",
    )
    atomic_write_json(tmp / "state.json", state)
    final = output / name
    replace_dir(tmp, final)
    atomic_write_json(_checkpoint_pointer(output), {"format": CHECKPOINT_FORMAT, "dir": name})
    for old in output.glob("ckpt-epoch-*"):
        if old.name != name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> list[dict[str, Any]]:
    """Load weights, optimizer and scheduler state in place (safe loaders only); returns per-rank RNG states."""
    from safetensors.torch import load_model

    current = folder / "model.safetensors"
    try:
        load_model(unwrap(model), str(current), strict=True)
        current = folder / "trainer.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the error below says enough
            blob = torch.load(current, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
    except Exception as exc:  # noqa: BLE001 - anything unloadable here is "not our checkpoint / damaged"
        raise TrainError(
            f"{current}: checkpoint does not match this model or is damaged ({_load_reason(exc)}); "
            f"start over with another --output (or delete {folder.parent})"
        ) from None
    return blob["rng"]


def _load_reason(exc: BaseException) -> str:
    """A short reason for an unloadable checkpoint file, without torch's advice to load it unsafely."""
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0].strip()
        return f"it holds more than tensors: {detail}"
    if "central directory" in text or "zip archive" in text:
        return "truncated or not a torch file"
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@caught_writes
def save_best_model(model: torch.nn.Module, output: Path, config: TrainConfig) -> None:
    """Save the model to OUTPUT/model atomically (written beside it, then swapped in), with a small
    ``training.json`` naming the image encoder whose features it was trained on (Predictor reads it)."""
    tmp = output / ".model.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    unwrap(model).save_pretrained(tmp)
    uses_images = "grid" in effective_visual(config).split("+") and config.image_encoder not in ("none", "")
    atomic_write_json(
        tmp / TRAINING_SIDECAR,
        {
            "image_encoder": config.image_encoder if uses_images else None,
            "train_config": dataclasses.asdict(config),
        },
    )
    replace_dir(tmp, output / "model")


# ----------------------------------------------------------------------------------------------------------
# the loop


def default_output(config: TrainConfig) -> Path:
    labels = Path(str(config.labels)).stem if config.labels else "nolabels"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in labels)
    return catmner_home() / "runs" / f"{config.dataset}-{config.variant}-{safe}-seed{config.seed}"


def _check_output(output: Path, config: TrainConfig) -> dict[str, Any] | None:
    """Validate the run directory: fresh, or holding our checkpoint of the same config. Returns its state."""
    found = read_checkpoint_state(output) if output.exists() else None
    if found is None:
        if output.exists() and any(p for p in output.iterdir() if not p.name.startswith(".") and not _own(p)):
            raise TrainError(
                f"{output}: exists, is not empty and holds no catmner checkpoint; choose another --output"
            )
        return None
    if found[1].get("label_words_checksum"):  # resumable under another --labels naming the same words
        recorded = found[1].get("config_fingerprint", {})  # (_train compares the resolved words' checksums)
        config = dataclasses.replace(config, labels=recorded.get("labels"), db=recorded.get("db"))
    folder, state = found
    before = dict(state.get("config_fingerprint", {}))
    now = json.loads(json.dumps(config_fingerprint(config), default=str))
    defaults = json.loads(json.dumps(config_fingerprint(TrainConfig()), default=str))
    for k in set(now) - set(before):  # a field added since the checkpoint was made, at its default value
        if now[k] == defaults.get(k):
            before[k] = now[k]
    if before != now:
        diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        changes = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in diff[:4])
        raise TrainError(
            f"{folder}: checkpoint was made with a different config ({changes}); use another --output"
        )
    state["_folder"] = str(folder)
    return state


def _own(path: Path) -> bool:
    """Whether a run directory entry is catmner's own output of a run that died before its first checkpoint
    (e.g. on a full disk): the best model so far, the log, the label words, a checkpoint folder. A new start replaces them."""
    if path.name in ("log.json", "label_words.json") or (
        path.name.startswith("ckpt-epoch-") and path.is_dir()
    ):
        return True
    if path.name != "model" or not path.is_dir():
        return False
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("format") == "catmner-model"
    except FileNotFoundError:
        return all(
            p.name.startswith(".") or p.suffix in (".json", ".safetensors", ".txt") for p in path.iterdir()
        )
    except (OSError, ValueError, AttributeError):
        return False


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
    from catmner_model.modeling import VARIANTS

    if config.variant not in VARIANTS:
        raise TrainError(f"unknown variant {config.variant!r}: choose one of {', '.join(VARIANTS)}")
    from catmner_model.visual import VISUAL_SOURCES

    if config.visual not in VISUAL_SOURCES or (config.visual == "none" and config.variant != "text"):
        raise TrainError(
            f"--visual {config.visual!r}: choose one of grid, caption, grid+caption (none is --variant text)"
        )
    if config.knowledge not in (None, "", "pgim"):
        raise TrainError(f"--knowledge {config.knowledge!r}: the only known knowledge is 'pgim'")
    from catmner_model.precision import PRECISIONS

    if config.precision not in PRECISIONS:
        raise TrainError(f"--precision {config.precision!r}: choose one of {', '.join(PRECISIONS)}")
    grid = "grid" in effective_visual(config).split("+")
    if config.finetune_image_encoder and (not grid or config.image_encoder in ("none", "")):
        raise TrainError("--finetune-image-encoder needs an image encoder and a variant that reads images")
    if config.labels and config.variant not in LABEL_WORD_VARIANTS:
        raise TrainError(
            f"variant {config.variant!r} uses no label words: drop --labels {config.labels} "
            f"(label words refine attention in {', '.join(LABEL_WORD_VARIANTS)})"
        )
    if config.epochs < 1 or config.batch_size < 1:
        raise TrainError("--epochs and --batch-size must be at least 1")
    info = setup_distributed()
    try:
        return _train(config, info, data, on_epoch_end)
    finally:
        if info.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _train(
    config: TrainConfig,
    info: DistInfo,
    data: dict[str, list[Tweet]] | None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
) -> dict[str, Any]:
    from catmner_model.modeling import CatMner, create_model
    from catmner_model.predict import count_truncated
    from catmner_model.precision import resolve_precision

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
    show = not config.quiet and info.is_main
    output = Path(config.output) if config.output else default_output(config)
    output = output.expanduser()
    checked: tuple[str, Any] = ("ok", None)
    if info.is_main:
        try:
            checked = ("ok", _check_output(output, config))
        except TrainError as exc:
            checked = ("error", str(exc))
    status, prior = broadcast_object(info, checked)  # every rank fails together instead of hanging
    if status == "error":
        raise TrainError(prior)
    if info.is_main:
        check_writable(output)  # created at its first write, so a failed start leaves no empty folder

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

    seed_everything(config.seed)
    model_cfg = build_model_config(config, feature_dim)
    model = create_model(model_cfg, label_words if label_words is not None else ())
    model.to(device)
    collate = model.collator()
    truncated = {k: count_truncated(collate, (t.tokens for t in v)) for k, v in splits.items()}
    if show and any(c["words"] for c in truncated.values()):
        tqdm.write(f"note: words past max_length pieces are never predicted: {truncated} (in log.json)")

    examples = split_examples["train"]
    lengths = example_lengths(examples, collate)
    steps_per_epoch = len(epoch_batches(lengths, config.batch_size, config.seed, 0, info, config.bucket_size))
    total_steps = steps_per_epoch * config.epochs
    optimizer = make_optimizer(model, config, device)
    scheduler = linear_schedule(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    seed_everything(config.seed + info.rank)  # dropout differs by rank; init above is the same everywhere

    start_epoch, best_f1, best_epoch, log = 0, -1.0, 0, []
    if prior is not None:
        rng = load_checkpoint(Path(prior["_folder"]), model, optimizer, scheduler)
        start_epoch, best_f1, best_epoch, log = (
            prior["epoch"],
            prior["best_f1"],
            prior["best_epoch"],
            prior["log"],
        )
        set_rng_state(rng[info.rank] if info.rank < len(rng) else rng[0])
        if show:
            tqdm.write(f"resuming {output} after epoch {start_epoch} (best valid F1 {best_f1:.2f})")

    net: torch.nn.Module = model
    if info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )

    for epoch in range(start_epoch, config.epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        batches = epoch_batches(lengths, config.batch_size, config.seed, epoch, info, config.bucket_size)
        desc = f"epoch {epoch + 1}/{config.epochs}"
        loss = run_epoch(net, optimizer, scheduler, examples, batches, collate, config, device, desc, show)
        t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
        valid, _ = evaluate_split(
            net,
            splits["valid"],
            split_examples["valid"],
            collate,
            config.eval_batch_size,
            device,
            info,
            "valid",
            show,
            config.precision,
        )
        t_total = time.perf_counter() - t0
        f1 = valid["lenient"]["f1"]
        improved = f1 > best_f1
        if improved:
            best_f1, best_epoch = f1, epoch + 1
        entry = {
            "epoch": epoch + 1,
            "loss": loss,
            "valid_lenient": _short(valid["lenient"]),
            "valid_strict": _short(valid["strict"]),
            "best_epoch": best_epoch,
            "train_seconds": round(t_train, 3),
            "train_cpu_seconds": round(
                c_train, 3
            ),  # process CPU time (all threads): robust to a busy machine
            "seconds": round(t_total, 3),
            "steps": len(batches),
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }
        log.append(entry)
        rngs = [_unpack(b) for b in gather_objects(info, _pack(rng_state()))]
        if info.is_main:
            if improved:
                save_best_model(model, output, config)
            state = {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "epoch": epoch + 1,
                "best_f1": best_f1,
                "best_epoch": best_epoch,
                "log": log,
                "config_fingerprint": json.loads(json.dumps(config_fingerprint(config), default=str)),
                "world_size": info.world_size,
                "label_words_checksum": words_sum,
            }
            if label_words is not None:  # the words this run trains on, reusable with --labels on a resume
                _write_json(output / "label_words.json", label_words.to_json())
            save_checkpoint(output, model, optimizer, scheduler, state, rngs)
            _write_json(
                output / "log.json", {"image_stats": image_stats, "truncated": truncated, "epochs": log}
            )
            if show:
                tqdm.write(
                    f"{desc}: loss {loss:.4f}  valid F1 {f1:.2f} (strict {valid['strict']['f1']:.2f})"
                    f"{'  *best*' if improved else ''}  {t_total:.1f}s"
                )
        barrier(info)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, entry)

    # final: reload the best model from disk and score it on valid and test
    barrier(info)
    best = CatMner.from_pretrained(output / "model", map_location=device)
    final_collate = best.collator()
    metrics = {}
    for split in ("valid", "test"):
        m, _ = evaluate_split(
            best,
            splits[split],
            split_examples[split],
            final_collate,
            config.eval_batch_size,
            device,
            info,
            split,
            show,
            config.precision,
        )
        metrics[split] = m
    record = {
        "schema": RUN_RECORD_SCHEMA,
        "config": dataclasses.asdict(config),
        "model_config": dataclasses.asdict(best.cfg),
        "seed": config.seed,
        "dataset": config.dataset,
        "variant": config.variant,
        "n_tweets": {k: len(v) for k, v in splits.items()},
        "best_epoch": best_epoch,
        "metrics": metrics,
        "epochs": log,
        "seconds_per_epoch": [e["seconds"] for e in log],
        "train_seconds_per_epoch": [e["train_seconds"] for e in log],
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "image_stats": image_stats,
        "truncated": truncated,  # per split: tweets past max_length pieces and their words never predicted
        "label_words": _label_words_info(label_words),
        "data_checksums": _data_checksums(config, data),
        "git": git_info(),
        "world_size": info.world_size,
        "precision": resolve_precision(config.precision, device),  # what "auto" meant on this hardware
        "model_dir": str(output / "model"),
        **environment_info(),
    }
    if info.is_main:
        _write_json(output / "run.json", record)
        if show:
            tqdm.write(
                f"best epoch {best_epoch}: valid F1 {metrics['valid']['lenient']['f1']:.2f}, "
                f"test F1 {metrics['test']['lenient']['f1']:.2f} (strict {metrics['test']['strict']['f1']:.2f})"
            )
    barrier(info)
    return record


def _label_words_info(lw: Any | None) -> dict[str, Any] | None:
    if lw is None:
        return None
    return {
        "source": getattr(lw, "source", None),
        "build_id": getattr(lw, "build_id", None),
        "checksum": getattr(lw, "checksum", None),
        "n_labels": len(lw.labels),
        "n_words": len(lw.words()),
    }


def _data_checksums(config: TrainConfig, data: dict[str, list[Tweet]] | None) -> dict[str, str | None]:
    """sha256 of each split file used (None for splits passed in memory)."""
    out: dict[str, str | None] = {}
    for split in ("train", "valid", "test"):
        if data and split in data:
            out[split] = None
            continue
        path = resolve_data_dir(config.data_dir) / config.dataset / f"{split}.txt"
        out[split] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    return out
