"""`--executor ray`: every planned run of a sweep a Ray task, on whatever node has the resources it asks for.

`RayExecutor` has `LocalExecutor`'s interface (`sweep.Executor`): it takes the sweep's ready runs (a run
waiting for another's model is handed out once that one ended), submits each as a task asking for
``cpus_per_run`` CPUs (torch uses that many threads in it) and ``gpus_per_run`` GPUs, at most ``workers`` at a
time, and ends each run in the sweep as its task returns. The task runs `sweep.execute_run` (so `run_spec`:
the record and the trainer's checkpoints go into the output folder, which on a cluster must be storage every
node shares). A run's own error is its failure record; a task whose worker process or node died is retried
``max_retries`` times by Ray and the run resumes from its last checkpoint, as a rerun does.

Where Ray runs: ``address`` None starts a Ray of this machine for the sweep (`start_local_ray`: bound to
127.0.0.1, no dashboard, a fresh token for its authentication, nothing written to ~/.ray) and stops it at the
end; "auto" joins the cluster started on this machine with ``ray start``; "HOST:PORT" joins that cluster's
head. Ray's `uv run` integration, which would rebuild the project's environment in every worker, is turned
off: the workers import the installed catmner_bench as the driver does.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
from dataclasses import replace
from typing import Any

from catmner_bench.errors import BenchError
from catmner_bench.runner import RunContext
from catmner_bench.sweep import Outcome, Sweep, execute_run, first_line, record_failure, run_name

# environment variables forwarded to every task (data, feature cache, kb store, label words, offline switches)
FORWARDED_ENV_PREFIXES = ("CATMNER_", "KBX_", "HF_", "TRANSFORMERS_")
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # a task returns one record: the local Ray needs little shared memory


def _ray(local: bool) -> Any:
    """The ``ray`` module with its `uv run` runtime-env hook off and, for a Ray of this machine, its node
    address on the loopback interface. Both are read from the environment when ray is imported, so they are
    set first and, when ray was imported before, put into its constants as that import would have."""
    settings = {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    if local:
        settings["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray's "no cluster" mode: node IP 127.0.0.1
        settings["RAY_USAGE_STATS_ENABLED"] = "0"  # nothing reported anywhere
    for k, v in settings.items():
        os.environ.setdefault(k, v)
    try:
        import ray
        from ray._private import ray_constants
    except ImportError as exc:  # pragma: no cover - ray is a dependency of catmner-bench
        raise BenchError(f"--executor ray needs the ray package ({exc}); run `uv sync`") from None
    on = ("1", "true", "True")  # ray_constants.env_bool's reading
    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] in on
    if local:
        ray_constants.ENABLE_RAY_CLUSTER = os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] in on
    return ray


def start_local_ray(num_cpus: int | None = None, temp_dir: str | None = None, quiet: bool = False) -> Any:
    """Start a Ray of this machine only (loopback address, no dashboard, nothing downloaded; ``temp_dir``:
    Ray's session folder, keep it short: its socket paths are limited to ~100 characters). Its token
    authentication gets a fresh token in this process's environment unless one is configured. Returns ray."""
    ray = _ray(local=True)
    if not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # Ray would write one into ~/.ray otherwise
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
        _temp_dir=temp_dir,
        logging_level=logging.WARNING,
        log_to_driver=not quiet,
    )
    return ray


def run_in_worker(ctx: RunContext, spec: Any, env: dict[str, str], cwd: str) -> Outcome:
    """The Ray task of one run: the driver's catmner settings and working folder (relative paths of the
    command mean the same; on a cluster, where that folder is on shared storage), torch threads = the CPUs
    Ray gave the task, then `execute_run` with where it runs (node, address, resources, GPU ids)."""
    import ray
    import torch

    os.environ.update(env)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    rc = ray.get_runtime_context()
    assigned = rc.get_assigned_resources()
    cpus = max(1, math.floor(assigned.get("CPU", 1)))
    gpus = assigned.get("GPU", 0)
    torch.set_num_threads(cpus)
    ctx = replace(ctx, profile=replace(ctx.profile, num_threads=cpus))
    compute = {
        "executor": "ray",
        "node": socket.gethostname(),
        "node_ip": ray.util.get_node_ip_address(),
        "node_id": rc.get_node_id(),
        "resources": {"CPU": cpus, "GPU": int(gpus) if float(gpus).is_integer() else gpus},
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
    }
    return execute_run(ctx, spec, compute)


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """BenchError unless something answers at a HOST:PORT address (Ray would retry it for minutes); other
    forms ("auto", "ray://...") are left to Ray."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise BenchError(f"--ray-address {address}: no Ray cluster answers there ({exc})") from None


class RayExecutor:
    """Runs a sweep's runs as Ray tasks (see the module docstring)."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        cpus_per_run: int | None = None,
        gpus_per_run: float | None = None,
        max_retries: int = 3,
        temp_dir: str | None = None,
    ) -> None:
        for what, v in (("--workers", workers), ("--cpus-per-run", cpus_per_run)):
            if v is not None and v < 1:
                raise BenchError(f"{what} {v}: expected 1 or more")
        if gpus_per_run is not None and gpus_per_run < 0:
            raise BenchError(f"--gpus-per-run {gpus_per_run}: expected 0 or more")
        if max_retries < 0:
            raise BenchError(f"--max-retries {max_retries}: expected 0 or more")
        self.address = None if address in (None, "", "local") else address
        self.workers, self.cpus_per_run, self.gpus_per_run = workers, cpus_per_run, gpus_per_run
        self.max_retries, self.temp_dir = max_retries, temp_dir

    def resources(self, ctx: RunContext) -> tuple[int, float]:
        """(CPUs, GPUs) one run asks for: the options, else the profile's threads (1 when unset) and one GPU
        under the paper profile (its encoders are for a GPU), none otherwise."""
        cpus = self.cpus_per_run or ctx.profile.num_threads or 1
        gpus = (
            self.gpus_per_run if self.gpus_per_run is not None else (1 if ctx.profile.name == "paper" else 0)
        )
        return cpus, gpus

    def connect(self, ctx: RunContext) -> tuple[Any, bool]:
        """(ray, whether this call started it): the Ray already initialised in this process, a new Ray of
        this machine, or the cluster at ``address``."""
        ray = _ray(local=self.address is None)
        if ray.is_initialized():
            return ray, False
        if self.address is None:
            cpus, _ = self.resources(ctx)
            num_cpus = self.workers * cpus if self.workers else None
            if num_cpus is not None:
                num_cpus = max(num_cpus, os.cpu_count() or 1)  # the machine's CPUs at least
            return start_local_ray(num_cpus, self.temp_dir, ctx.quiet), True
        check_reachable(self.address)
        try:
            ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=not ctx.quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BenchError(
                f"--ray-address {self.address}: cannot join a Ray cluster ({first_line(exc)}); check the "
                "address and that RAY_AUTH_TOKEN is the cluster's"
            ) from None
        return ray, True

    def capacity(self, ray: Any, cpus: int, gpus: float) -> int:
        """Runs at a time: ``workers``, else as many as the cluster's CPUs (and GPUs) hold now. A run that no
        node of the cluster can hold is refused here rather than left waiting."""
        total = ray.cluster_resources()
        fits = int(total.get("CPU", 0) // cpus)
        if gpus:
            fits = min(fits, int(total.get("GPU", 0) // gpus))
        if fits < 1:
            have = f"{total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs"
            raise BenchError(
                f"each run asks for {cpus} CPU(s) and {gpus:g} GPU(s) but the Ray cluster has {have}: "
                "start nodes that have them or lower --cpus-per-run / --gpus-per-run"
            )
        return self.workers or fits

    def run(self, sweep: Sweep) -> None:
        ctx = sweep.ctx
        if not sweep.ready() and not sweep.pending:
            return  # every run finished before: no Ray needed to skip them
        ray, started_here = self.connect(ctx)
        try:
            self._run(ray, sweep)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray: Any, sweep: Sweep) -> None:
        ctx = sweep.ctx
        cpus, gpus = self.resources(ctx)
        cap = self.capacity(ray, cpus, gpus)
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
        task = ray.remote(run_in_worker)
        inflight: dict[Any, Any] = {}
        try:
            while True:
                for spec in sweep.ready(cap - len(inflight)):
                    ref = task.options(
                        num_cpus=cpus,
                        num_gpus=gpus,
                        max_retries=self.max_retries,
                        retry_exceptions=False,  # a run's own error is its outcome; only deaths are retried
                        name=run_name(spec),
                    ).remote(ctx, spec, env, os.getcwd())
                    inflight[ref] = spec
                    sweep.start(spec)
                if not inflight:
                    break
                done, _ = ray.wait(list(inflight), num_returns=1)
                for ref in done:
                    spec = inflight.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # its worker or node died past max_retries
                        error = (
                            f"the run's Ray task failed after {self.max_retries} retries: {first_line(exc)}"
                        )
                        where = {"executor": "ray", "resources": {"CPU": cpus, "GPU": gpus}}
                        path = record_failure(ctx, spec, error, str(exc), where)
                        outcome = Outcome(spec, error=error, failure=str(path))
                    sweep.end(outcome)
        except BaseException:
            for ref in inflight:  # interrupted: stop the runs; the next command resumes them
                ray.cancel(ref, force=True)
            raise
        if sweep.pending:
            raise BenchError(f"{len(sweep.pending)} run(s) wait for a run that never ends")
