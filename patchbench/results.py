"""Parquet results store: one file per cell, written atomically, named by the cell's run id.

Layout under ``--results DIR``::

    DIR/cells/<run_id>.parquet         one row: the cell's config, counts, accuracy, CI, provenance
    DIR/predictions/<run_id>.parquet   per-image predictions (index, label, pred) of that cell
    DIR/artifacts/models|patches/      cached checkpoints and patches the cells were computed with
    DIR/audit/cells/<preset>.parquet   per-cell audit verdicts (audit_* columns, audit_notes), joined on read

A cell's columns are declared by whoever writes them (:mod:`patchbench.columns`; a row with an
undeclared column is refused). Its run id is the hash of its key columns, so a stored cell is
skipped on rerun (resume), and files are written to a hidden temp name and renamed, so a killed
sweep leaves whole files only.
Predictions are written before the cell row: a cell row's presence means both are complete.
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from patchbench.columns import check_row, column_names, key_columns
from patchbench.config.keys import cache_hash
from patchbench.errors import check
from patchbench.util import atomic_write, remove_stale_temps

AUDIT_DIR = Path("audit") / "cells"  # per-cell audit verdicts (patchbench.audit.runner), joined on read


def run_id(key: dict[str, Any]) -> str:
    """The cell's id: its declared key columns (:mod:`patchbench.columns`) that are not None."""
    ident = {k: key[k] for k in key_columns() if key.get(k) is not None}
    return cache_hash(ident, n=20)


def one_precision(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells a table or figure shows: per preset, the fp32 cells when there are any, else the
    autocast ones (``--amp``), so that fp32 and bf16/fp16 numbers never mix in one table."""
    if cells.empty or "amp" not in cells or cells["amp"].isna().all():
        return cells
    amp = cells["amp"].notna()
    has_fp32 = cells.loc[~amp, "preset"].unique()
    return cells[~(amp & cells["preset"].isin(has_fp32))]


def wilson_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (scipy's binomtest, no continuity corr.)."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    atomic_write(path, buf.getvalue())


class NotCached(Exception):
    """Raised in plan-only mode when a model or patch the grid needs is not cached yet."""


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (0 <= i < n) -> (i, n); None -> None. One-line PatchbenchError otherwise."""
    from patchbench.errors import PatchbenchError

    if text is None:
        return None
    i, sep, n = str(text).partition("/")
    ascii_int = lambda v: v.strip().isascii() and v.strip().isdigit()  # noqa: E731 ('²'.isdigit() is True, int('²') fails)
    if not (sep and ascii_int(i) and ascii_int(n) and 0 <= int(i) < int(n)):
        raise PatchbenchError(f"--shard must be i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(i), int(n)


class ResultStore:
    """Cells and predictions under ``root``. With ``shard=(i, n)`` this store computes only the cells
    whose run id falls in slice i of n (a deterministic partition by run id: shards never overlap and
    any set of shards covering 0..n-1 completes the grid); it still reads every stored cell."""

    def __init__(self, root: str | Path, shard: tuple[int, int] | None = None, plan_only: bool = False,
                 read_only: bool = False):
        self.shard = shard
        # plan_only (``patchbench status``): nothing is trained or computed; the engine only notes the
        # run ids a grid would have, in ``planned``
        self.plan_only = plan_only
        self.planned: list[str] = []
        from patchbench.errors import check_writable_dir

        # checked before any training or evaluation; a reader (tables, figures, status) only needs a directory
        self.root = check_writable_dir(root, "--results", writable=not (read_only or plan_only))
        self.cells_dir = self.root / "cells"
        self.pred_dir = self.root / "predictions"
        self.artifacts = self.root / "artifacts"

    def ensure(self) -> "ResultStore":
        for d in (self.cells_dir, self.pred_dir):
            d.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(d)  # leftovers of a killed writer
        return self

    def owns(self, rid: str) -> bool:
        """Whether this store (shard) computes the cell ``rid``."""
        if self.plan_only:
            return False
        return self.shard is None or int(rid[:12], 16) % self.shard[1] == self.shard[0]

    def require_cached(self, what: str, path) -> None:
        """In plan-only mode, a missing model or patch stops the planning (nothing is trained)."""
        if self.plan_only and not Path(path).exists():
            raise NotCached(f"{what} not trained yet ({Path(path).name}); the grid cannot be planned before it exists")

    def has(self, rid: str) -> bool:
        return (self.cells_dir / f"{rid}.parquet").exists()

    def write(self, row: dict[str, Any], predictions: pd.DataFrame) -> None:
        self.ensure()
        check_row(row)  # an undeclared column is an error, never dropped
        rid = row["run_id"]
        _atomic_parquet(predictions, self.pred_dir / f"{rid}.parquet")
        _atomic_parquet(pd.DataFrame([{c: row.get(c) for c in column_names()}]), self.cells_dir / f"{rid}.parquet")

    def read_cell(self, rid: str) -> dict[str, Any]:
        return pd.read_parquet(self.cells_dir / f"{rid}.parquet").iloc[0].to_dict()

    def write_audit(self, name: str, verdicts: pd.DataFrame) -> Path:
        """Per-cell audit verdicts (one row per ``run_id``) into ``name``'s file: each row replaces the
        stored row of its run id, the other stored rows stay (an audit writes only what it judged)."""
        check(verdicts["run_id"].is_unique, "audit verdicts must have one row per run_id")
        path = self.root / AUDIT_DIR / f"{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        old = self.load_audit(name)
        if len(old):
            verdicts = pd.concat([old[~old["run_id"].isin(verdicts["run_id"])], verdicts], ignore_index=True)
        _atomic_parquet(verdicts, path)
        return path

    def load_audit(self, name: str | None = None) -> pd.DataFrame:
        """The stored audit verdicts (``<root>/audit/cells/*.parquet``, or ``name``'s only), one row per
        run id: the newest audit version's (``audit_version``; rows from before it count as oldest)."""
        d = self.root / AUDIT_DIR
        files = ([d / f"{name}.parquet"] if name is not None else sorted(d.glob("*.parquet"))) if d.is_dir() else []
        frames = [pd.read_parquet(f) for f in files if f.is_file()]
        if not frames:
            return pd.DataFrame(columns=["run_id"])
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if "audit_version" in df:
            df = df.sort_values("audit_version", kind="stable", na_position="first")
        return df.drop_duplicates("run_id", keep="last").reset_index(drop=True)

    def load_cells(self) -> pd.DataFrame:
        """Every stored cell, with its audit verdicts' columns where an audit has run (missing elsewhere)."""
        files = sorted(self.cells_dir.glob("*.parquet")) if self.cells_dir.is_dir() else []
        df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame(columns=column_names())
        audit = self.load_audit()
        if len(audit) and len(df):
            keep = [c for c in audit.columns if c.startswith("audit_") or c == "run_id"]
            df = df.merge(audit[keep], on="run_id", how="left")
        df.attrs["results"] = str(self.root)  # where the artifacts (models' training histories) are
        return df

    def load_predictions(self, rid: str) -> pd.DataFrame:
        return pd.read_parquet(self.pred_dir / f"{rid}.parquet")
