"""PatchCleanser certification: patchbench's batched double masking against the reference's per-image
loop (issue 36; ``make bench``).

On the ICAART demo's model and images — the preset ``demo-fmnist``'s trained ``small_vgg``
(Fashion-MNIST at 64 px; cached under ``--results``, as ``patchbench train-model --preset
demo-fmnist`` leaves it) and the first ``--n`` of its evaluation images — at k masks per axis and
each patch side of ``--sizes`` (default: the preset's ``certified`` sizes), both sides compute, per
image, the double-masking prediction and the certificate:

* **patchbench**: ``PatchCleanser(patch_px=p, k=k).maps(x, model)`` on the whole batch, as the
  engine calls it (:mod:`patchbench.defenses.patchcleanser`, :mod:`patchbench.defenses.mask_pairs`);
* **reference loop**: ``benchmarks/pc_reference.py`` — the authors' structure (its mask list, every
  two-mask prediction i ≤ j of one image at a time, then ``certify_precomputed`` and
  ``double_masking_precomputed`` on the map), ``--ref-batch`` images per forward (1: one image at a
  time; the authors' ``pc_certification.py`` forwards its loader's 16).

Every repetition first asserts, image by image, that the certified label (−1: none; certified for
the true label iff it equals it) and the double-masking prediction are the same on both sides, then
the two are timed back to back (patchbench first, ``--repeat`` repetitions after a warm-up on 4
images; the same process, model, images and thread count). The row's speed-up is the median of the
per-repetition ratios reference / patchbench; its note gives the minimum, images/s both ways, the
certified share, the masked images patchbench classified per image (the reference: k²(k²+1)/2) and
the 1-minute load average. Goal (issue 36): ≥ 10× at k = 6 on the CPU, judged on the minimum ratio.

``--device`` takes ``auto`` (CUDA when available), ``cpu`` or ``cuda[:i]``; asking for CUDA where
there is none is one ``error:`` line and exit code 2, before any work.

    python benchmarks/bench_certify.py [--results results] [--n 200] [--k 6] [--sizes 6,10,14] [--repeat 3]
                                       [--ref-batch 1] [--device auto] [--threads 2] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pc_reference import certify_loop  # noqa: E402
from peers import machine, row, sync, write_rows  # noqa: E402

from patchbench.errors import PatchbenchError, check  # noqa: E402

PRESET = "demo-fmnist"
GOAL = 10.0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results", help="results directory holding the trained demo model")
    ap.add_argument("--n", type=int, default=200, help="evaluation images (the preset's first n)")
    ap.add_argument("--k", type=int, default=6, help="masks per axis")
    ap.add_argument("--sizes", default=None, help="patch sides, comma-separated (default: the preset's certified sizes)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ref-batch", type=int, default=1, help="images per forward in the reference loop")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--csv", default=None)
    return ap.parse_args(argv)


def check_args(args) -> list[int] | None:
    """The patch sides asked for (None: the preset's); every other option checked, before any work."""
    for name in ("n", "k", "repeat", "ref_batch", "threads"):
        check(getattr(args, name) >= 1, f"--{name.replace('_', '-')} must be >= 1")
    sizes = None
    if args.sizes is not None:
        try:
            sizes = [int(s) for s in args.sizes.split(",")]
        except ValueError:
            raise PatchbenchError(f"--sizes must be integers separated by commas, got {args.sizes!r}") from None
        check(all(0 < s < 64 for s in sizes), f"--sizes must be in 1..63 (64 px images), got {args.sizes!r}")
    return sizes


def device_of(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; a CUDA device asked for where there is none is an error."""
    from patchbench.devices import resolve_device

    check(name == "auto" or name == "cpu" or name.startswith("cuda"), f"--device must be auto, cpu or cuda[:i], got {name!r}")
    return resolve_device(name)


def demo_model_and_images(results: str, n: int, device: torch.device):
    """The demo preset's cached classifier (never trained here), its first n evaluation images and labels,
    and its certified sizes."""
    from patchbench.cache.models import ensure_model
    from patchbench.data import eval_indices, load_split
    from patchbench.presets import load_preset
    from patchbench.store.results import NotCached, ResultStore

    preset = load_preset(PRESET)
    d = preset.data
    source = load_split(d.dataset, d.root, d.eval_split, d.image_size)  # a missing dataset: one error line
    try:
        model = ensure_model(preset, ResultStore(results, plan_only=True), device, progress=False).model
    except NotCached:
        raise PatchbenchError(f"the {PRESET} classifier is not in {results}: run `patchbench train-model --preset "
                              f"{PRESET} --results {results}` first (make bench does)") from None
    idx = eval_indices(len(source), d.eval_n, d.eval_seed)[:n]
    x = source.batch(idx, d.image_size, device)
    y = source.labels[idx].to(device) if hasattr(source, "labels") else None
    return model, x, y, sorted(preset.extra["certified"].sizes)


def compare(p: int, k: int, model, x, y, repeat: int, ref_batch: int, device) -> dict:
    """Interleaved repetitions of both sides at patch side p; each checked image by image."""
    from patchbench.defenses.base import CERTIFIED
    from patchbench.defenses.patchcleanser import PatchCleanser

    defense = PatchCleanser(patch_px=p, k=k)

    def ours():
        maps = defense.maps(x, model)
        return maps["pred"].cpu().numpy(), maps[CERTIFIED].cpu().numpy(), maps["forwards"]

    def reference():
        return certify_loop(model, x, p, k, batch=ref_batch)

    PatchCleanser(patch_px=p, k=k).maps(x[:4], model)  # warm-up: both sides' first calls
    certify_loop(model, x[:4], p, k, batch=ref_batch)
    ours_s, ref_s = [], []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        pred, cert, forwards = ours()
        sync(device)
        t1 = time.perf_counter()
        ref_pred, ref_cert, ties = reference()
        sync(device)
        t2 = time.perf_counter()
        ours_s.append(t1 - t0)
        ref_s.append(t2 - t1)
        bad_cert = np.nonzero(cert != ref_cert)[0]
        bad_pred = np.nonzero(pred != ref_pred)[0]
        assert not len(bad_cert), f"{p} px: certificates differ on images {bad_cert.tolist()}: {cert[bad_cert]} vs {ref_cert[bad_cert]}"
        assert not len(bad_pred), f"{p} px: predictions differ on images {bad_pred.tolist()}: {pred[bad_pred]} vs {ref_pred[bad_pred]}"
    labels = y.cpu().numpy() if y is not None else None
    return {"ours_s": ours_s, "ref_s": ref_s, "ratios": [r / o for o, r in zip(ours_s, ref_s)],
            "certified": float(np.mean(cert == labels)) if labels is not None else float(np.mean(cert >= 0)),
            "clean": float(np.mean(pred == labels)) if labels is not None else float("nan"),
            "ties": int(ties.sum()), "forwards": forwards / len(x), "ref_forwards": (k * k) * (k * k + 1) / 2}


def main(argv=None):
    args = parse_args(argv)
    try:
        sizes = check_args(args)
        device = device_of(args.device)
        torch.set_num_threads(args.threads)
        model, x, y, preset_sizes = demo_model_and_images(args.results, args.n, device)
    except PatchbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    rows = []
    for p in sizes or preset_sizes:
        r = compare(p, args.k, model, x, y, args.repeat, args.ref_batch, device)
        ratio_min, ratio_med = min(r["ratios"]), statistics.median(r["ratios"])
        ours, ref = statistics.median(r["ours_s"]), statistics.median(r["ref_s"])
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        note = (f"identical certificates and predictions on all {len(x)} images; ratio min {ratio_min:.1f}× / median "
                f"{ratio_med:.1f}× over {args.repeat}; {len(x) / ours:.1f} vs {len(x) / ref:.2f} img/s; certified "
                f"{100 * r['certified']:.1f} %, clean {100 * r['clean']:.1f} %; {r['forwards']:.0f} masked images "
                f"classified per image (reference {r['ref_forwards']:.0f}); majority ties {r['ties']}; "
                f"reference {args.ref_batch} image(s) per forward; load {load:.2f}")
        out = row("certify", f"PatchCleanser certification, {p} px patch, k = {args.k}",
                  f"{len(x)}×1×64×64, {PRESET} small_vgg", ours, f"reference loop (pc_reference.py, batch {args.ref_batch})",
                  ref, goal=GOAL, note=note, device=device)
        out["speedup"], out["meets_goal"] = round(ratio_med, 3), bool(ratio_min >= GOAL)
        rows.append(out)
        print(f"{p} px: patchbench {ours:.2f} s, reference {ref:.2f} s; {note}", flush=True)
    write_rows(rows, args.csv)
    print(f"measured on {machine()}")


if __name__ == "__main__":
    main()
