"""How time and peak memory grow with the number of images N and with the image size (``make bench``).

Each point runs in a fresh process (so its peak RSS is its own): the evaluation engine streams the
first N Fashion-MNIST test images (upsampled to S px on the fly) through a small_vgg (random
weights; the cost does not depend on them) in batches of 64, for the clean images with no defense
and with LGS at three λ — a sweep's inner loop. The dataset (10000 × 28×28 uint8) is loaded whole
at every N, so memory that grows with N is the engine's own. Rows: time and peak RSS per point; the
"peer" column is the linear extrapolation from the smallest point (time × N/N₀), so a speed-up near
1 means linear time, and the note gives the peak RSS beside the smallest point's and the marginal
time per image, (t(N) - t(N₀)) / (N - N₀), which leaves out the fixed costs (first batch, the
parquet writes) that make the whole-run time sublinear at small N.

    python benchmarks/bench_scaling.py [--n 256,1024,4096] [--sizes 64,128,256] [--threads 2] [--csv out.csv]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import machine, row, write_rows  # noqa: E402

CHILD = r"""
import json, resource, sys, tempfile, time
import torch
torch.set_num_threads({threads})
from patchbench.data import eval_indices, load_split
from patchbench.defenses.base import NoDefense
from patchbench.defenses.lgs import LGS
from patchbench.evaluation.engine import Condition, DefenseRun, EvalContext, evaluate
from patchbench.models import build_classifier
from patchbench.store.results import ResultStore
n, size = {n}, {size}
source = load_split("fashion-mnist", None, "test", size)
model = build_classifier("small_vgg", "fashion-mnist", None, size).eval().requires_grad_(False)
runs = [DefenseRun(NoDefense(), [None]), DefenseRun(LGS(window=5, overlap=2), [1.5, 2.3, 3.1])]
ctx = {{"dataset": "fashion-mnist", "split": "test", "eval_seed": 0, "image_size": size, "model": "small_vgg", "model_id": "x"}}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with tempfile.TemporaryDirectory() as d:
    t0 = time.perf_counter()
    evaluate(EvalContext(model, source, eval_indices(len(source), n, 0), size, 64, ResultStore(d), torch.device("cpu"), ctx,
                         progress=False), [Condition(None)], runs)
    seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "before_mb": before / 1024}}))
"""


def point(n: int, size: int, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(n=n, size=size, threads=threads)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="256,1024,4096", help="numbers of images (at 64 px)")
    ap.add_argument("--sizes", default="64,128,256", help="image sizes (at 256 images)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    rows = []
    ns = [int(v) for v in args.n.split(",")]
    base = point(ns[0], 64, args.threads)
    for n in ns:
        p = base if n == ns[0] else point(n, 64, args.threads)
        marginal = (f"; marginal {1e3 * (p['seconds'] - base['seconds']) / (n - ns[0]):.2f} ms/image"
                    f" (N = {ns[0]}: {1e3 * base['seconds'] / ns[0]:.2f} ms/image with the fixed costs)") if n != ns[0] else ""
        rows.append(row("scaling", f"engine, N = {n} images (clean: none + LGS × 3 λ)", f"{n}×1×64×64", p["seconds"],
                        f"linear from N = {ns[0]}", base["seconds"] * n / ns[0],
                        note=f"peak RSS {p['peak_mb']:.0f} MB (N = {ns[0]}: {base['peak_mb']:.0f} MB; "
                             f"before the loop {p['before_mb']:.0f} MB){marginal}"))
        print(rows[-1]["task"], f"{p['seconds']:.2f} s, peak {p['peak_mb']:.0f} MB", flush=True)
    sizes = [int(v) for v in args.sizes.split(",")]
    base = point(256, sizes[0], args.threads)
    for s in sizes:
        p = base if s == sizes[0] else point(256, s, args.threads)
        rows.append(row("scaling", f"engine, image size {s} px (256 images)", f"256×1×{s}×{s}", p["seconds"],
                        f"linear in pixels from {sizes[0]} px", base["seconds"] * (s / sizes[0]) ** 2,
                        note=f"peak RSS {p['peak_mb']:.0f} MB ({sizes[0]} px: {base['peak_mb']:.0f} MB)"))
        print(rows[-1]["task"], f"{p['seconds']:.2f} s, peak {p['peak_mb']:.0f} MB", flush=True)
    df = write_rows(rows, args.csv)
    print()
    print(df[["task", "workload", "patchbench_s", "peer_s", "speedup", "note"]]
          .rename(columns={"patchbench_s": "seconds", "peer_s": "linear s"}).to_markdown(index=False, floatfmt=".3g"))
    print(f"measured on {machine()}")


if __name__ == "__main__":
    main()
