"""The per-cell audit's gradient probes, batched against one cell at a time, on a preset's stored cells.

Issue 36 item 4 asks to batch the audit's gradient probes. ``patchbench.audit.probes.gradient_probes``
probes the cells of one defense × λ × gradient path together, several patches' copies of the ``n``
evaluation images per batch (up to 256 images); before, each cell was one call on its own ``n``
images, its defense built again. Here both run on the same model, images, patches and cells, in one
process, interleaved (best of ``--repeat`` after a warm-up): the per-cell way is the same function
with one cell per call (a batch of ``n`` images, its defense built for it), so the two differ in
batching only. Each pair first asserts that both give every cell the same count of images without a
gradient.

    python benchmarks/bench_audit.py [--preset demo-fmnist] [--results results] [--n 32] [--cells 60] [--csv out.csv]

Needs a results directory holding the preset's patch cells (``patchbench reproduce`` or ``sweep``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import machine, row, write_rows  # noqa: E402

from patchbench.audit.probes import PatchedImages, gradient_probes  # noqa: E402
from patchbench.sections.audit import _indices, _jobs, patch_files  # noqa: E402
from patchbench.cache.models import ensure_model  # noqa: E402
from patchbench.data import iterate, load_split  # noqa: E402
from patchbench.devices import resolve_device  # noqa: E402
from patchbench.presets import load_preset  # noqa: E402
from patchbench.store.results import ResultStore, one_precision  # noqa: E402


def best(fn, repeat: int) -> tuple[float, object]:
    out, times = fn(), []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo-fmnist")
    ap.add_argument("--results", default="results")
    ap.add_argument("--n", type=int, default=32, help="evaluation images per cell (the preset's audit.n: 32)")
    ap.add_argument("--cells", type=int, default=60, help="the first N attacked patch cells (0: all)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    preset = load_preset(args.preset)
    device = resolve_device(preset.device)
    store = ResultStore(args.results, read_only=True)
    loaded = ensure_model(preset, ResultStore(args.results, plan_only=True), device, progress=False)
    cells = one_precision(store.load_cells())
    cells = cells[(cells["preset"] == preset.name) & (cells["model_id"] == loaded.model_id)]
    files = patch_files(store.root)
    jobs = _jobs(cells, files)
    jobs = jobs[:args.cells] if args.cells else jobs
    if not jobs:
        sys.exit(f"error: no stored patch cells of {preset.name} in {args.results}; run `patchbench reproduce` first")
    idx = _indices(store, cells[cells["patch_id"].notna()], args.n)
    d = preset.data
    source = load_split(d.dataset, d.root, d.eval_split, d.image_size)
    _, images, labels = next(iter(iterate(source, idx, d.image_size, len(idx), device)))
    patched = PatchedImages(files, images)
    for j in jobs:
        patched.get(j.patch_id, j.placement)  # the pasting is shared by both ways: not timed

    def per_cell():
        out = {}
        for j in jobs:
            out.update(gradient_probes([j], patched, loaded.model, labels))
        return out

    per_cell_s, a = best(per_cell, args.repeat)
    batched_s, b = best(lambda: gradient_probes(jobs, patched, loaded.model, labels), args.repeat)
    assert a == b, "the batched probes disagree with the per-cell ones"
    groups = len({(j.defense, j.defense_params, j.lam, j.adaptive) for j in jobs})
    workload = f"{preset.name}: {len(jobs)} cells × {len(idx)} images, {groups} defense × λ × path groups"
    rows = [row("audit", "gradient probes", workload, batched_s, "one cell per call (the audit before)", per_cell_s,
                note="identical counts of images without a gradient, cell by cell", device=device)]
    print(machine())
    print(f"{workload}: one cell per call {per_cell_s:.2f} s, batched {batched_s:.2f} s, "
          f"speed-up {per_cell_s / batched_s:.2f}×")
    write_rows(rows, args.csv)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
