"""Sweeps past one process on an existing engine: submitit job arrays (SLURM, or its local executor).

``patchbench sweep --executor slurm --shards n`` submits n jobs, job i running ``sweep --shard i/n``
(:class:`patchbench.store.results.ResultStore`'s deterministic partition by run id) into the same results
directory; ``--executor local`` runs the same jobs as local processes through submitit's
LocalExecutor (what the tests use). No scheduler of our own: submitit writes the sbatch array,
tracks the jobs and brings back their results or tracebacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from patchbench.errors import PatchbenchError, check, is_int
from patchbench.runner.sweep import check_sweep_inputs, sweep
from patchbench.store.results import ResultStore

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class ClusterOptions:
    partition: str | None = None  # SLURM partition
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    timeout_min: int = 240
    array_parallelism: int = 64  # at most this many shards at once
    log_dir: Path | None = None  # default: <results>/submitit


def run_shard(preset, results: str, shard: str, defenses, lambdas, patch_files) -> int:
    """One job of the array: the preset's sweep restricted to ``shard``; returns the cells it sees."""

    return len(sweep(preset, Path(results), defenses, lambdas, patch_files, progress=False, shard=shard))


def submit_sweep(preset, results: Path, shards: int, executor: str, options: ClusterOptions,
                 defenses=None, lambdas=None, patch_files=None, wait: bool = True) -> list:
    """Submit ``shards`` sweep jobs through submitit; with ``wait``, block until all finish and raise
    one PatchbenchError naming the failed shards (their logs stay under the log folder)."""
    check(executor in EXECUTORS, f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    check(is_int(shards) and shards >= 1, f"--shards must be an integer >= 1, got {shards!r}")
    try:
        import submitit  # reason: optional dependency (the cluster extra), refused in one line when missing
    except ImportError:
        raise PatchbenchError("--executor needs submitit: pip install 'patchbench[cluster]' (or pip install submitit)") from None
    folder = Path(options.log_dir or Path(results) / "submitit")
    ex = submitit.AutoExecutor(folder=folder, cluster="local" if executor == "local" else "slurm")
    params = {"timeout_min": options.timeout_min, "cpus_per_task": options.cpus_per_task}
    if executor == "slurm":
        params.update(slurm_array_parallelism=options.array_parallelism, gpus_per_node=options.gpus_per_node)
        if options.partition:
            params["slurm_partition"] = options.partition
    ex.update_parameters(**params)
    n = int(shards)
    jobs = ex.map_array(run_shard, [preset] * n, [str(results)] * n, [f"{i}/{n}" for i in range(n)],
                        [defenses] * n, [lambdas] * n, [patch_files] * n)
    if wait:
        failed = []
        for i, job in enumerate(jobs):
            try:
                job.result()
            except Exception as exc:  # submitit re-raises the job's error; keep its first line
                failed.append(f"{i}/{n} ({type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''})")
        if failed:
            raise PatchbenchError(f"shards failed: {'; '.join(failed)} (logs in {folder}); rerun to complete the grid")
    return jobs


def sweep_on_cluster(preset, results: Path, shard: str | None, shards: int, executor: str, options: ClusterOptions,
                     defenses=None, lambdas=None, patch_files=None) -> str:
    """``patchbench sweep --executor``: every input checked here, then ``shards`` jobs run to the end;
    returns the summary line."""

    check(shard is None, "--shard and --executor exclude each other: the executor runs every shard of --shards")
    check_sweep_inputs(preset, defenses, lambdas, patch_files)
    jobs = submit_sweep(preset, results, shards, executor, options, defenses, lambdas, patch_files)
    stored = len(ResultStore(results, read_only=True).load_cells())
    return f"{len(jobs)} {executor} job(s) finished; {stored} cells in {Path(results) / 'cells'}"
