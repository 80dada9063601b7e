"""A run directory's files: resumable atomic checkpoints, the best model, the run-directory checks.

Layout (see `catmner_model.training`): ``checkpoint.json`` points at the latest complete ``ckpt-epoch-NNNN/``
(``model.safetensors``, ``trainer.pt`` with optimizer, scheduler and RNG states loaded ``weights_only``,
``state.json``); ``model/`` is the best model so far. Every write is atomic; a write that fails on a full or
read-only disk becomes one TrainError line and leaves the last complete checkpoint intact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from catmner_model.atomic import atomic_write_json, write_failure, write_hint, writing
from catmner_model.errors import load_failure
from catmner_model.training.config import TrainConfig, TrainError, config_fingerprint, effective_visual
from catmner_model.training.distributed import unwrap

CHECKPOINT_FORMAT = "catmner-train-checkpoint"
CHECKPOINT_VERSION = 1
TRAINING_SIDECAR = "training.json"  # in a model directory: image encoder + training config (optional file)


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
                with contextlib.suppress(OSError):  # made by this write and left empty: not left behind
                    if not any(target.iterdir()):
                        target.rmdir()
            where = getattr(exc, "catmner_file", None) or getattr(exc, "filename", None) or target
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


write_json = caught_writes(atomic_write_json)  # atomic JSON into a run directory, failures as TrainError


def _checkpoint_pointer(output: Path) -> Path:
    return output / "checkpoint.json"


def read_checkpoint_state(output: Path) -> tuple[Path, dict[str, Any]] | None:
    """The latest complete checkpoint of a run directory: (its folder, its state.json), or None."""
    pointer = _checkpoint_pointer(output)
    if not pointer.exists():
        return None
    ref = _read_json_object(pointer)
    name = ref.get("dir")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise TrainError(f"{pointer}: bad checkpoint directory name {name!r}"[:300])
    folder = output / name
    state = _read_json_object(folder / "state.json")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{folder}: not a catmner training checkpoint")
    if state.get("version") != CHECKPOINT_VERSION:
        raise TrainError(
            f"{folder}: checkpoint version {state.get('version')!r} is not supported (expected {CHECKPOINT_VERSION})"[
                :300
            ]
        )
    return folder, state


def _read_json_object(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON file (checkpoint.json, state.json) as a dict; anything else is one line naming it."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise TrainError(
            f"{path}: missing: the checkpoint is incomplete; start over with another --output"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0][:120]
        raise TrainError(
            f"{path}: not a readable catmner checkpoint file ({why}); start over with another --output"
        ) from None
    if not isinstance(data, dict):
        raise TrainError(f"{path}: not a readable catmner checkpoint file (expected a JSON object)")
    return data


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
    final = output / name  # failures name the file as it will be called once complete
    with writing(final):
        tmp.mkdir(parents=True)
    with writing(final / "model.safetensors"):
        save_model(unwrap(model), str(tmp / "model.safetensors"))
    with writing(final / "trainer.pt"):
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_states},
            tmp / "trainer.pt",
        )
    with writing(final / "state.json"):
        atomic_write_json(tmp / "state.json", state)
    replace_dir(tmp, final)
    atomic_write_json(_checkpoint_pointer(output), {"format": CHECKPOINT_FORMAT, "dir": name})
    for old in output.glob("ckpt-epoch-*"):
        if old.name != name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return final


def drop_checkpoints(output: str | Path) -> int:
    """Remove a finished run's resume state (``checkpoint.json``, then every ``ckpt-epoch-*/``), keeping its
    best model, log and run record: for callers that keep their own record of finished runs and never resume
    one (the benchmark harness; a CAT-MNER checkpoint is about 260 MB). The pointer goes first, so a removal
    cut short leaves no pointer to a half-removed folder. Returns the folders removed."""
    output = Path(output)
    _checkpoint_pointer(output).unlink(missing_ok=True)
    dropped = 0
    for old in output.glob("ckpt-epoch-*"):
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
            dropped += 1
    return dropped


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
    return load_failure(exc)


@caught_writes
def save_best_model(model: torch.nn.Module, output: Path, config: TrainConfig) -> None:
    """Save the model to OUTPUT/model atomically (written beside it, then swapped in), with a small
    ``training.json`` naming the image encoder whose features it was trained on (Predictor reads it)."""
    tmp = output / ".model.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        unwrap(model).save_pretrained(tmp)
        uses_images = "grid" in effective_visual(config) and config.image_encoder not in ("none", "")
        atomic_write_json(
            tmp / TRAINING_SIDECAR,
            {
                "image_encoder": config.image_encoder if uses_images else None,
                "train_config": dataclasses.asdict(config),
            },
        )
    except BaseException as exc:  # name the file as it will be called in OUTPUT/model, not its temp copy
        noted = getattr(exc, "catmner_file", None) or getattr(exc, "filename", None)
        final = str(noted).replace(str(tmp), str(output / "model")) if noted else str(output / "model")
        with contextlib.suppress(AttributeError, TypeError):
            exc.catmner_file = final  # type: ignore[attr-defined]
        raise
    replace_dir(tmp, output / "model")


def check_output(output: Path, config: TrainConfig) -> dict[str, Any] | None:
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
