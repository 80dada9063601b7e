"""The optimizer of a run: AdamW over (pretrained encoder | new layers) x (decay | no decay) parameter groups,
with a linear warm-up/decay schedule."""

from __future__ import annotations

from typing import Any

import torch

from catmner_model.training.config import TrainConfig


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
    """AdamW groups: (pretrained encoder | new layers) x (decay | no decay on biases, norms, 1-d tensors); with
    ``saliency_lr``, the learned saliency scale in a group of its own at that learning rate."""
    kinds = {id(p): kind for kind, params in model.parameter_groups().items() for p in params}
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = kinds.get(id(p), "new")
        if name == "saliency_log_scale" and config.saliency_lr is not None:
            kind = "saliency"  # the learned saliency scale at its own learning rate
        no_decay = p.ndim < 2 or name.endswith("bias") or "norm" in name.lower()
        groups.setdefault((kind, no_decay), []).append(p)
    return [
        {
            "params": params,
            "lr": {"encoder": config.encoder_lr, "saliency": config.saliency_lr}.get(kind, config.lr),
            "weight_decay": 0.0 if no_decay else config.weight_decay,
            "name": f"{kind}{'-nodecay' if no_decay else ''}",
        }
        for (kind, no_decay), params in sorted(groups.items())
    ]
