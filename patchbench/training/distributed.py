"""Data-parallel training over processes started by ``torchrun`` (torch.distributed), for every
objective of the one training loop.

``torchrun --nproc_per_node K -m patchbench train-model ...`` (or ``train-model --nproc K``, which
runs exactly that) sets RANK / WORLD_SIZE / LOCAL_RANK; :func:`setup` joins the process group
(gloo on CPU, NCCL on GPUs, one GPU per local rank). Then, in :func:`patchbench.training.loop.train`:

* **data**: every rank draws the same global epoch order (same seeded generator, same syllabus), and
  each global batch of ``batch_size`` images is split DistributedSampler-style, rank r taking
  positions r, r + K, r + 2K, ... — the union over ranks of a step is exactly the single-process
  batch, and the global batch size (hence the learning-rate schedule) does not change with K;
* **gradients**: after each backward the gradients are averaged over the ranks with one all-reduce
  of the flattened gradients, and every rank steps its own optimizer on the same average, so the
  replicas stay identical (rank 0's parameters and buffers are broadcast at the start). This is
  what ``DistributedDataParallel``'s reducer computes, done explicitly after the backward: the
  objectives run several forwards per step through different entry points (the training attack on
  the bare model, GradCAM hooks for AAD, clean and adversarial passes for ALP), which DDP's
  forward-hooked reducer does not see — an explicit average is correct for all of them.
  BatchNorm running statistics are rank 0's, as with DDP's default ``broadcast_buffers``: they are
  broadcast after every step, so the replicas are identical in buffers too (the training attack
  runs the model in eval mode, i.e. on the running statistics, on every rank);
* **randomness**: the training attack's random start is drawn for the whole global batch on every
  rank and each rank keeps its own rows (:func:`share`), so K ranks start PGD where one process
  does and the attack generators stay equal on all ranks. Dropout (the global torch generator)
  cannot be drawn that way; each rank seeds it with its own seed (:func:`rank_seed`, rank 0 the
  single process's), so no two images of a global batch share a dropout mask. Checkpoints keep
  every rank's generator state, gathered by rank 0;
* **files**: only rank 0 writes checkpoints and artifacts; the others wait at a barrier. A killed
  run resumes from rank 0's per-epoch checkpoint on every rank.

With one process (no WORLD_SIZE, or 1) nothing here is active and training is bit-identical to
before. Per-step loss terms shown and kept in the history are averaged over the ranks.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

import torch
import torch.distributed as dist

from patchbench.errors import PatchbenchError


def launched() -> bool:
    """Started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def _die_with_parent() -> None:
    """torchrun starts each worker in a session of its own, so a ``kill -9`` of torchrun (or of
    ``train-model --nproc``) would leave the workers training on as orphans — and finishing, or
    racing a rerun for the checkpoint. On Linux each worker asks the kernel for SIGKILL when its
    parent dies (prctl PR_SET_PDEATHSIG), and exits at once if the parent is already gone."""

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def setup(device: torch.device) -> torch.device:
    """Join the torchrun process group (once); returns this rank's device (cuda:LOCAL_RANK on GPUs)."""
    if not launched():
        return device
    if os.environ.get("TORCHELASTIC_RUN_ID") is not None:  # a torchrun worker (not a test's own spawn)
        _die_with_parent()
    if not dist.is_available():
        raise PatchbenchError("this torch build has no torch.distributed; run without torchrun")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise PatchbenchError(f"local rank {local} has no GPU ({torch.cuda.device_count()} visible): "
                                  f"start at most that many processes per machine")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_model(model: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    if active():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, 0)


def average_gradients(params: list[torch.Tensor]) -> None:
    """Replace every gradient by its mean over the ranks (one all-reduce of all of them)."""
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def sync_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: one broadcast per dtype."""
    if not active():
        return
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for b in model.buffers():
        groups.setdefault(b.dtype, []).append(b)
    for bufs in groups.values():
        flat = torch.cat([b.detach().reshape(-1) for b in bufs])
        dist.broadcast(flat, 0)
        offset = 0
        for b in bufs:
            b.data.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()


def share() -> tuple[int, int] | None:
    """(rank, K) when K > 1 processes train together, else None: what a random draw per image needs
    to draw the global batch's values and keep this rank's rows (rank, rank + K, ...)."""
    return (rank(), world()) if active() else None


def rank_seed(seed: int) -> int:
    """This rank's seed for the generators that cannot draw per global batch (dropout): rank 0 keeps
    ``seed`` (so it is the single process's stream), rank r gets another fixed seed."""
    r = rank()
    return seed if r == 0 else (seed * 1_000_003 + r * 7919) % (2 ** 63)


def gather(obj) -> list:
    """``obj`` of every rank, in rank order, on every rank (``[obj]`` for one process)."""
    if not active():
        return [obj]
    out: list = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Per-key means over the ranks (every rank must pass the same keys)."""
    if not active() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world() for k, v in zip(keys, t)}


def shard_order(order: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, int]:
    """This rank's part of the global epoch ``order`` (whole global batches only) and its per-rank
    batch size: of every global batch, positions rank, rank + K, rank + 2K, ..."""
    k = world()
    if k == 1:
        return order, batch_size
    if batch_size % k:
        raise PatchbenchError(f"model.train.batch_size {batch_size} must be divisible by the {k} processes "
                              f"(the global batch is split evenly)")
    steps = len(order) // batch_size
    return order[: steps * batch_size].view(steps, batch_size)[:, rank()::k].reshape(-1), batch_size // k


def check_launch(nproc: int, batch_size: int, device: torch.device) -> None:
    """Before starting ``nproc`` processes: the global batch splits evenly, and there is a GPU for each."""
    if batch_size % nproc:
        raise PatchbenchError(f"model.train.batch_size {batch_size} must be divisible by --nproc {nproc} "
                              f"(the global batch is split evenly)")
    if device.type == "cuda" and torch.cuda.device_count() < nproc:
        raise PatchbenchError(f"--nproc {nproc} needs one GPU per process; {torch.cuda.device_count()} visible "
                              f"(or train on the CPU with --device cpu)")


def relaunch_args(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command that runs ``argv`` (patchbench's own arguments, ``--nproc`` dropped: the
    children are the K processes) in ``nproc`` processes."""

    for i, a in enumerate(argv):
        if a == "--nproc":
            argv = argv[:i] + argv[i + 2:]
            break
        if a.startswith("--nproc="):
            argv = argv[:i] + argv[i + 1:]
            break
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "patchbench", *argv]


def relaunch(nproc: int, argv: list[str], batch_size: int, device: torch.device) -> int:
    """Run this command again under torchrun in ``nproc`` processes (checked first: fail here, not in
    K tracebacks); returns torchrun's exit code."""

    check_launch(nproc, batch_size, device)
    return subprocess.call(relaunch_args(nproc, argv))
