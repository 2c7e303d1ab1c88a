"""Parquet results store: one file per cell, written atomically, named by the cell's run id.

Layout under ``--results DIR``::

    DIR/cells/<run_id>.parquet         one row: the cell's config, counts, accuracy, CI, provenance
    DIR/predictions/<run_id>.parquet   per-image predictions (index, label, pred) of that cell
    DIR/artifacts/models|patches/      cached checkpoints and patches the cells were computed with
    DIR/audit/cells/<preset>.parquet   per-cell audit verdicts (audit_* columns, audit_notes), joined on read

A cell's columns are declared by whoever writes them (:mod:`patchbench.store.columns`; a row with an
undeclared column is refused). Its run id is the hash of its key columns, so a stored cell is
skipped on rerun (resume), and files are written to a hidden temp name and renamed, so a killed
sweep leaves whole files only.
Predictions are written before the cell row: a cell row's presence means both are complete.
A cell file is trusted only when it reads back as a cell (:func:`~patchbench.store.cellfiles.read_cell_file`:
it opens, holds one row with the required columns under its own run id, and its predictions hold its n
images); a damaged one is set aside as ``<run_id>.parquet.corrupt`` and computed again (a writing
store) or left out of what is read (tables, reports), each with one line on stderr, never used.
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import os
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from patchbench.config.keys import cache_hash
from patchbench.errors import PatchbenchError, check, check_writable_dir
from patchbench.store.cellfiles import predictions_problem, read_cell_file_once, warn
from patchbench.store.columns import check_row, column_names, key_columns
from patchbench.util import atomic_write, remove_stale_temps

AUDIT_DIR = Path("audit") / "cells"  # per-cell audit verdicts (patchbench.sections.audit), joined on read


def run_id(key: dict[str, Any]) -> str:
    """The cell's id: its declared key columns (:mod:`patchbench.store.columns`) that are not None."""
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
    from scipy.stats import binomtest  # reason: scipy.stats takes a second to import; the CLI's start needs no interval

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
    if df.attrs:  # pyarrow would store them in the file, and pandas deep-copies them into every frame derived from it
        df = df.copy(deep=False)
        df.attrs = {}
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    atomic_write(path, buf.getvalue())


class NotCached(Exception):
    """Raised in plan-only mode when a model or patch the grid needs is not cached yet."""


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (0 <= i < n) -> (i, n); None -> None. One-line PatchbenchError otherwise."""

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
        self.read_only = read_only or plan_only  # a reader never moves a file, not even a damaged one
        self.planned: list[str] = []

        # checked before any training or evaluation; a reader (tables, figures, status) only needs a directory
        self.root = check_writable_dir(root, "--results", writable=not (read_only or plan_only))
        self.cells_dir = self.root / "cells"
        self.pred_dir = self.root / "predictions"
        self.artifacts = self.root / "artifacts"
        self._rows: dict[str, pd.DataFrame] = {}  # cells read back whole (has, then read_cell: one read)
        self._made: tuple[int, int] | None = None  # the root's (device, inode) once this store wrote into it

    def ensure(self) -> "ResultStore":
        if self._made is not None:  # the results directory removed (or replaced) under a running sweep
            try:
                st = os.stat(self.cells_dir)
            except FileNotFoundError:
                st = None
            if st is None or (st.st_dev, st.st_ino) != self._made:
                raise PatchbenchError(f"the results directory {self.root} was removed while this run wrote into it: "
                                      "nothing more was written; rerun the same command to compute its cells again")
        for d in (self.cells_dir, self.pred_dir):
            d.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(d)  # leftovers of a killed writer
        st = os.stat(self.cells_dir)
        self._made = (st.st_dev, st.st_ino)
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
        """Whether cell ``rid`` is stored whole; a damaged file counts as missing (and is set aside by a
        store that writes, so the engine computes the cell again)."""
        return self._cell(rid) is not None

    def _cell(self, rid: str) -> pd.DataFrame | None:
        if rid in self._rows:
            return self._rows[rid]
        path = self.cells_dir / f"{rid}.parquet"
        if not path.exists():
            return None
        df, problem = read_cell_file_once(path)
        if problem is None:
            problem = predictions_problem(self.pred_dir / path.name, int(df["n"].iloc[0]))
        if problem is None:
            self._rows[rid] = df
            return df
        if self.read_only:
            warn(f"cell {path} {problem}: counted as missing (a sweep computes it again)")
        else:
            for f in (path, self.pred_dir / path.name):  # kept for a look, out of every reader's way
                if f.exists():
                    os.replace(f, f.with_name(f.name + ".corrupt"))
            warn(f"cell {path} {problem}: set aside as {path.name}.corrupt and computed again")
        return None

    def write(self, row: dict[str, Any], predictions: pd.DataFrame) -> None:
        self.ensure()
        check_row(row)  # an undeclared column is an error, never dropped
        rid = row["run_id"]
        _atomic_parquet(predictions, self.pred_dir / f"{rid}.parquet")
        _atomic_parquet(pd.DataFrame([{c: row.get(c) for c in column_names()}]), self.cells_dir / f"{rid}.parquet")

    def read_cell(self, rid: str) -> dict[str, Any]:
        df = self._cell(rid)
        if df is None:
            raise PatchbenchError(f"cell {rid} is not stored in {self.cells_dir}")
        return df.iloc[0].to_dict()

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
        """The stored audit verdicts (``audit/cells/*.parquet``, or ``name``'s), one row per run id: per
        column the value of the last file that has one (``<preset>.parquet``, ``<preset>.<section>.parquet``),
        the newest ``audit_version`` last, ``audit_notes`` joined; a file that does not open is left out."""
        d = self.root / AUDIT_DIR
        files = ([d / f"{name}.parquet"] if name is not None else sorted(d.glob("*.parquet"))) if d.is_dir() else []
        frames = []
        for f in (f for f in files if f.is_file()):
            try:
                frames.append(pd.read_parquet(f))
                frames[-1].attrs = {}  # an earlier version stored a frame's attrs (the attack outcomes) in the file
            except Exception as exc:  # damaged verdicts: the cells stay, unaudited
                warn(f"audit verdicts {f} do not open ({type(exc).__name__}): left out; "
                      "`patchbench audit PRESET --rerun` writes them again")
        if not frames:
            return pd.DataFrame(columns=["run_id"])
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        df = df.sort_values("audit_version", kind="stable", na_position="first") if "audit_version" in df else df
        if df["run_id"].is_unique:
            return df.reset_index(drop=True)
        merged = df.groupby("run_id", sort=False).last().reset_index()  # last non-missing value per column
        if "audit_notes" in df:
            notes = df.groupby("run_id", sort=False)["audit_notes"].agg(lambda s: " | ".join(v for v in s.dropna() if v))
            merged["audit_notes"] = merged["run_id"].map(notes)
        return merged

    def load_cells(self) -> pd.DataFrame:
        """Every stored cell, with its audit verdicts' columns where an audit has run (missing elsewhere)."""
        files = sorted(self.cells_dir.glob("*.parquet")) if self.cells_dir.is_dir() else []
        frames = []
        for f in files:
            cell, problem = read_cell_file_once(f)
            if problem is None:
                frames.append(cell)
            else:
                warn(f"cell {f} {problem}: left out (a sweep of its preset computes it again)")
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=column_names())
        audit = self.load_audit()
        if len(audit) and len(df):
            keep = [c for c in audit.columns if c.startswith("audit_") or c == "run_id"]
            df = df.merge(audit[keep], on="run_id", how="left")
        df.attrs["results"] = str(self.root)  # where the artifacts (models' training histories) are
        return df

    def load_predictions(self, rid: str) -> pd.DataFrame:
        path = self.pred_dir / f"{rid}.parquet"
        try:
            return pd.read_parquet(path)
        except Exception as exc:
            raise PatchbenchError(f"predictions {path} are unreadable ({type(exc).__name__}); clear the cell with "
                                  f"`rm '{path}' '{self.cells_dir / path.name}'` and rerun its sweep") from None
