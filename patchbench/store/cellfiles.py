"""Reading one stored cell file, whole or not at all: a file that does not read back as a cell (it
does not open, holds other than one row, lacks a required column, names another cell, or its
predictions do not match) is reported in one stderr line per file and process and never used.
Each unchanged file is read once per process."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from patchbench.store.columns import REQUIRED
from patchbench.util import console


def read_cell_file(path: Path) -> tuple[pd.DataFrame | None, str | None]:
    """(the cell's one-row frame, None), or (None, what is wrong with the file): it does not open, does
    not hold exactly one row, lacks a required column (:data:`patchbench.store.columns.REQUIRED`), or is
    another cell than its name says."""
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # truncated, garbage, not parquet: pyarrow raises several kinds
        return None, f"does not open as parquet ({type(exc).__name__})"
    if len(df) != 1:
        return None, f"holds {len(df)} rows, not one"
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        return None, f"lacks the column(s) {', '.join(missing)}"
    if df["run_id"].iloc[0] != path.stem:
        return None, f"holds cell {df['run_id'].iloc[0]!r}, not {path.stem!r}"
    return df, None


# Cell files read in this process, by path: (the file's stat key, its one-row frame). A cell file is written
# once by an atomic rename and never changed in place, so an unchanged (inode, size, mtime) is an unchanged
# cell: a `reproduce` reads every cell several times (grid, audit, each table), a file once.
_READ: dict[str, tuple[tuple[int, int, int], pd.DataFrame]] = {}
_READ_LIMIT = 200_000  # one-row frames of a few kB each: cleared past this many


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def read_cell_file_once(path: Path) -> tuple[pd.DataFrame | None, str | None]:
    """:func:`read_cell_file`, each unchanged file read once per process (a damaged one each time, so
    that its problem is reported where it is read)."""
    key = _stat_key(path)
    hit = _READ.get(str(path))
    if hit is not None and key is not None and hit[0] == key:
        return hit[1], None
    df, problem = read_cell_file(path)
    if problem is None and key is not None:
        if len(_READ) >= _READ_LIMIT:
            _READ.clear()
        _READ[str(path)] = key, df
    return df, problem


def predictions_problem(path: Path, n) -> str | None:
    """What is wrong with a cell's predictions file (its footer only: opens, index/label/pred, n rows)."""
    try:
        meta = pq.read_metadata(path)
    except FileNotFoundError:
        return f"has no predictions file {path.name}"
    except Exception as exc:
        return f"has unreadable predictions ({type(exc).__name__})"
    if not {"index", "label", "pred"} <= set(meta.schema.names) or meta.num_rows != n:
        return f"has predictions of another shape ({meta.num_rows} rows, {n} expected)"
    return None


_WARNED: set[str] = set()


def warn(line: str) -> None:
    """One stderr line per damaged file and process (tables read the cells several times)."""
    if line not in _WARNED:
        _WARNED.add(line)
        console.print(line, style="yellow", markup=False, highlight=False)
