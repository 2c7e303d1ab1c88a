"""Attacks against their peers, in one run on the same model and images (issue 12 Part 4; ``make bench``).

Rows (``speedup`` = peer time / patchbench time at equal work; patchbench and the peer interleaved,
best of ``--repeat`` after a warm-up):

* PGD (L∞, ε = 0.1, α = 0.01, 10 steps, random start) — ``torchattacks.PGD`` with the same ε, α,
  steps and loss (cross-entropy), on a LeNet trained here for 300 Adam steps on Fashion-MNIST
  28 px (64 test images) and on a ResNet-18 (random weights, 10 classes) with 16 images at
  3×64×64. The note gives both attacks' robust accuracy (their random starts differ, so the numbers
  agree only statistically).
* Adversarial Patch training throughput (images/s through the optimisation loop) — ART's
  ``AdversarialPatchPyTorch`` (a ``PyTorchClassifier`` around the same model) with the same patch
  (square, 8 px, fixed location, no rotation/scale/perspective), the same Adam learning rate, the
  same batch and the same number of optimisation steps (ART's ``max_iter`` passes over exactly one
  batch). ART's step also draws its random-transform machinery (kornia-free torchvision ops) even
  when the ranges are zero; patchbench's fixed placement is a slice assignment.

The N-pixel attack vs torchattacks' OnePixel is ``benchmarks/bench_npixel.py --peer-csv``.

``--profile K`` also runs each side once more under ``torch.profiler`` and prints its K ops with the
most self time (where the time goes when a ratio is below 1 or below its goal). ``--device cuda``
runs the models, images and ART's classifier on the GPU (timings synchronised).

    python benchmarks/bench_peers_attacks.py [--repeat 3] [--threads 2] [--device cpu] [--profile 0] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_npixel import SIZE, train_model  # noqa: E402
from peers import machine, row, sync, timeit_pair, write_rows  # noqa: E402

from patchbench.attacks.adversarial_patch import AdversarialPatch  # noqa: E402
from patchbench.attacks.patch import Placement  # noqa: E402
from patchbench.attacks.pgd import PGD  # noqa: E402
from patchbench.data import iterate, load_split  # noqa: E402


def fmnist(n: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    test = load_split("fashion-mnist", None, "test", SIZE)
    _, x, y = next(iterate(test, torch.arange(offset, offset + n), SIZE, n, torch.device("cpu")))
    return x, y


def robust_accuracy(model, x_adv, y) -> float:
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def profile_top(fn, title: str, k: int, device) -> None:
    """Print the ``k`` ops of one ``fn()`` run with the most self time (torch.profiler; CPU, plus CUDA on a GPU)."""
    if k <= 0:
        return
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    key = "self_cuda_time_total" if torch.device(device).type == "cuda" else "self_cpu_time_total"
    print(f"--- profile: {title} (top {k} by {key})")
    print(prof.key_averages().table(sort_by=key, row_limit=k, max_name_column_width=40))


def pgd_rows(model, x, y, label: str, workload: str, repeat: int, torchattacks, device="cpu", profile: int = 0) -> dict:
    eps, alpha, steps = 0.1, 0.01, 10
    ours = PGD(model, eps, steps, alpha, random_start=True, seed=0)
    peer = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    t_ours, t_peer = timeit_pair(lambda: ours(x, y), lambda: peer(x, y), repeat, device)
    profile_top(lambda: ours(x, y), f"patchbench PGD {label}", profile, device)
    profile_top(lambda: peer(x, y), f"torchattacks PGD {label}", profile, device)
    acc_ours, acc_peer = robust_accuracy(model, ours(x, y), y), robust_accuracy(model, peer(x, y), y)
    return row("attacks", f"PGD {label} (eps 0.1, 10 steps)", workload, t_ours, "torchattacks 3.5 PGD", t_peer,
               note=f"robust accuracy: patchbench {acc_ours:.3f}, torchattacks {acc_peer:.3f}", device=device)


def patch_row(model, x, y, repeat: int, steps: int, device="cpu", profile: int = 0) -> dict:
    from art.attacks.evasion import AdversarialPatchPyTorch
    from art.estimators.classification import PyTorchClassifier

    size, target, c = 8, 0, x.shape[1]
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
                            clip_values=(0.0, 1.0),
                            device_type="gpu" if torch.device(device).type == "cuda" else "cpu")
    top, left = Placement("top-right", 2).offset(SIZE, size)
    onehot = np.eye(10, dtype=np.float32)[np.full(len(x), target)]
    x_np = x.cpu().numpy()  # ART takes numpy and moves each batch to its device itself

    def ours():
        atk = AdversarialPatch(model, size, target, Placement("top-right", 2), SIZE, steps=steps, lr=0.05,
                               optimizer="adam", schedule="multistep", progress=False, seed=0)
        atk.fit(iter([(x, y)] * steps), channels=c)

    def peer():
        art = AdversarialPatchPyTorch(clf, rotation_max=0.0, scale_min=0.99999, scale_max=1.0, distortion_scale_max=0.0,
                                      learning_rate=0.05, max_iter=steps, batch_size=len(x), patch_shape=(c, size, size),
                                      patch_location=(left, top), patch_type="square", optimizer="Adam", targeted=True,
                                      verbose=False)
        art.generate(x_np, onehot)

    t_ours, t_peer = timeit_pair(ours, peer, repeat, device)
    profile_top(ours, "patchbench Adversarial Patch training", profile, device)
    profile_top(peer, "ART AdversarialPatchPyTorch", profile, device)
    work = steps * len(x)
    return row("attacks", "Adversarial Patch training (8 px, Adam, fixed place)", f"{steps} steps × {len(x)} images, LeNet 28 px",
               t_ours, "ART 1.20 AdversarialPatchPyTorch", t_peer,
               note=f"images/s through the loop: patchbench {work / t_ours:.0f}, ART {work / t_peer:.0f}", device=device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--patch-steps", type=int, default=50)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    ap.add_argument("--profile", type=int, default=0, metavar="K", help="print each side's top K ops (torch.profiler)")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_peers_attacks: --device cuda but torch sees no GPU")
    try:
        import torchattacks
    except ImportError:
        raise SystemExit("bench_peers_attacks needs the bench extra: pip install -e '.[bench]'") from None
    torch.set_num_threads(args.threads)

    lenet = train_model("lenet", 300, dev).eval().requires_grad_(False)
    x, y = (t.to(dev) for t in fmnist(64))
    rows = [pgd_rows(lenet, x, y, "LeNet", "64×1×28×28", args.repeat, torchattacks, dev, args.profile)]
    print(rows[-1])
    import torchvision

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(num_classes=10).eval().requires_grad_(False).to(dev)
    xr, yr = torch.rand(16, 3, 64, 64).to(dev), torch.randint(0, 10, (16,)).to(dev)
    rows.append(pgd_rows(resnet, xr, yr, "ResNet-18", "16×3×64×64", args.repeat, torchattacks, dev, args.profile))
    print(rows[-1])
    xp, yp = (t.to(dev) for t in fmnist(32, 64))
    rows.append(patch_row(lenet, xp, yp, args.repeat, args.patch_steps, dev, args.profile))
    print(rows[-1])
    write_rows(rows, args.csv)
    print(f"measured on {machine()}")


if __name__ == "__main__":
    main()
