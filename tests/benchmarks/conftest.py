"""One shared smoke benchmark: all five experiments run once into a session folder, then reported.

Every test of this folder reads that output (records + report), so the suite trains each tiny model once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

EXPERIMENTS = ("table1", "table2", "table3", "fig3", "fig4")


@pytest.fixture(scope="session")
def bench(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict:
    """{"output", "report", "results": {experiment: run result}, "seconds"} of the smoke benchmark."""
    import torch
    from catmner_bench.cli import run
    from catmner_bench.report import write_report

    torch.set_num_threads(1)
    home = tmp_path_factory.mktemp("bench_home")
    old = os.environ.get("CATMNER_HOME")
    os.environ["CATMNER_HOME"] = str(home)  # feature cache and trainer defaults stay in tmp
    try:
        out = tmp_path_factory.mktemp("bench") / "out"
        data = shared_data
        results, seconds = {}, {}
        for exp in EXPERIMENTS:
            t0 = time.perf_counter()
            results[exp] = run(exp, profile="smoke", output=out, data_dir=data, quiet=True)
            seconds[exp] = time.perf_counter() - t0
        report = write_report(out)
    finally:
        if old is None:
            os.environ.pop("CATMNER_HOME", None)
        else:
            os.environ["CATMNER_HOME"] = old
    return {"output": out, "report": report, "results": results, "seconds": seconds, "data": data}
