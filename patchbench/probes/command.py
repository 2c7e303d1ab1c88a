"""How a probe runs as a command (``python -m patchbench.probes.<module>``), written once: the options
every probe shares, the preset's first evaluation images, and the ending — the probe's table printed,
or one ``error:`` line and exit code 2 (a model not trained yet named as such: probes never train)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from patchbench.config import Preset
from patchbench.data import ImageSource, eval_indices, load_split
from patchbench.errors import PatchbenchError
from patchbench.store.results import NotCached, ResultStore
from patchbench.util import console


def parser(module: str, doc: str, *, preset: str | None = None, n: int | None = None, results: bool = True,
           sets: bool = True) -> argparse.ArgumentParser:
    """The probe's parser with the shared options: ``--preset`` (required unless it has a default),
    ``--results`` (a results directory of cached models), ``--n`` (the first N evaluation images;
    None: all) and ``--set`` (preset overrides, as patchbench's)."""
    ap = argparse.ArgumentParser(prog=f"python -m patchbench.probes.{module}", description=doc.split("\n\n")[0])
    ap.add_argument("--preset", required=preset is None, default=preset)
    if results:
        ap.add_argument("--results", default="results")
    ap.add_argument("--n", type=int, default=n, help="the first N evaluation images" + (" (default: all)" if n is None else ""))
    if sets:
        ap.add_argument("--set", action="append", default=[], help="preset override, as patchbench's --set")
    return ap


def eval_images(preset: Preset, n: int | None) -> tuple[ImageSource, torch.Tensor]:
    """The preset's evaluation split and the indices of its first ``n`` evaluation images (None: all)."""
    d = preset.data
    source = load_split(d.dataset, d.root, d.eval_split, d.image_size)
    return source, eval_indices(len(source), d.eval_n, d.eval_seed)[:n]


def model_store(results) -> ResultStore:
    """The results directory a probe reads cached models from, never training one."""
    return ResultStore(Path(results), plan_only=True)


def run(probe: Callable[[], pd.DataFrame], digits: int, errors: tuple[type[Exception], ...] = ()) -> int:
    """Run ``probe`` and print its table (``digits`` decimals); a user error (PatchbenchError, or one of
    ``errors``) is one line on stderr and exit code 2."""
    try:
        df = probe()
    except NotCached as exc:
        print(f"error: {exc}; run `patchbench reproduce` (or sweep) for the preset first (probes never train a model)",
              file=sys.stderr)
        return 2
    except (PatchbenchError, *errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    console.print(df.to_string(index=False, float_format=lambda v: f"{v:.{digits}f}"))
    return 0
