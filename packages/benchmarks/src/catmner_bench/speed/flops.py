"""Timing primitives and FLOP rates: `Clock` (wall and process-CPU seconds), FLOP counting of a step
(`count_flops`, torch's FlopCounterMode), the machine's matmul peak (`gemm_peak`, a large square GEMM) and the
rate at a transformer layer's own shapes (`gemm_model_shapes`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


class Clock:
    """Wall-clock and process-CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def gemm_peak(n: int, reps: int, dtype: torch.dtype) -> dict[str, float]:
    """GFLOP/s of an n x n x n matrix product (best and median of ``reps``, wall and process CPU)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    torch.mm(a, b)  # warm-up (oneDNN primitive creation, page faults)
    walls, cpus = [], []
    for _ in range(reps):
        with Clock() as c:
            torch.mm(a, b)
        walls.append(c.wall)
        cpus.append(c.cpu)
    flops = 2.0 * n**3
    return {
        "n": n,
        "gflops_best": flops / min(walls) / 1e9,
        "gflops_median": flops / statistics.median(walls) / 1e9,
        "gflops_per_cpu_s_best": flops / max(min(cpus), 1e-9) / 1e9,
    }


def gemm_model_shapes(m: int, hidden: int, inner: int, reps: int, dtype: torch.dtype) -> dict[str, Any]:
    """GFLOP/s of the matrix products a transformer layer runs on m token rows (the step's real positions):
    Q/K/V/output (m x hidden x hidden), feed-forward in (m x hidden x inner) and out (m x inner x hidden), as
    ``F.linear`` with the weights' layout. The FLOP-weighted rate over the layer's six products is the rate
    the encoder's matmuls can reach at these shapes on this machine, to set beside the square-GEMM peak."""
    g = torch.Generator().manual_seed(0)
    shapes = [("qkvo", hidden, hidden, 4), ("ffn_in", hidden, inner, 1), ("ffn_out", inner, hidden, 1)]
    rows, total_flops, total_s = [], 0.0, 0.0
    for name, k, n, count in shapes:
        x = torch.randn(m, k, generator=g).to(dtype)
        w = torch.randn(n, k, generator=g).to(dtype)
        torch.nn.functional.linear(x, w)  # warm-up
        walls = []
        for _ in range(reps):
            with Clock() as c:
                torch.nn.functional.linear(x, w)
            walls.append(c.wall)
        flops = 2.0 * m * k * n
        best = min(walls)
        rows.append({"name": name, "m": m, "k": k, "n": n, "gflops_best": flops / best / 1e9})
        total_flops += count * flops
        total_s += count * best
    return {"m": m, "hidden": hidden, "inner": inner, "shapes": rows, "gflops": total_flops / total_s / 1e9}


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of ``fn()`` as torch's FlopCounterMode counts them (matmuls, convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def precision_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a precision name (bf16 -> bfloat16, anything else float32)."""
    return torch.bfloat16 if precision == "bf16" else torch.float32
