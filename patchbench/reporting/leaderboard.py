"""``patchbench leaderboard``: per dataset × model × defense, the clean accuracy, the robust accuracy
under the strongest attack found, the certified accuracy where a certifying defense ran, the audit's
flags and where the numbers came from; as a markdown table or as JSON entries that merge across
machines.

One entry per defended model and threat model, from every stored cell (all presets, every attack,
adaptive ones and their snapshots included):

* the entry's key (:data:`KEY`) is what makes two numbers comparable: the evaluation images (dataset,
  split, eval_n, eval_seed, image size), the model's weights (``model_id``, a hash of the state dict),
  its training objective, the defense with its parameters and λ, the prediction precision (``amp``)
  and the threat model. ``key`` in the JSON is its hash: boards from several machines merge on it;
* threat model: a patch attack counts when its patch covers at most ``max_area`` % of the image (25 %
  by default: the largest patch the shipped papers evaluate, BMVC 2023's "at least 5 %, up to 25 %";
  the half-image patch of the unconstrained-failure check stays out), and an attacker may use any
  smaller patch: ``largest_patch_pct`` says how large the largest one tried was; an evasion attack by
  its norm and budget (``linf ε=0.3``, ``l0 1 px``, a region);
* robust accuracy: the lowest accuracy of any attacked cell under that threat (per cell, not per image),
  with the strongest cell named (attack, patch size, seed, adaptive step and the defense it was trained
  through) and its Wilson 95 % interval; clean accuracy: the defense's clean cell; certified: a
  certifying defense's clean cell (PatchCleanser: ``certified_accuracy``, certified for patches up to its
  ``patch_px``);
* audit: the audit flags (``audit_*`` columns, tables' tags) on the strongest cell, and how many of the
  entry's attacked cells were audited and flagged;
* provenance, per machine: CPU, torch threads, torch, device, git SHA, version, the presets and the
  newest cell's date.

Merging (:func:`merge`): entries with one key become one, the robust accuracy the lowest of them (the
strongest attack any machine found), the attacks' and presets' union, every provenance kept.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import pandas as pd

from patchbench.attacks import ATTACKS
from patchbench.audit.indicators import INDICATORS
from patchbench.defenses import certifies
from patchbench.errors import PatchbenchError, check
from patchbench.store.results import ResultStore, one_precision
from patchbench.util import stable_hash

FORMAT = "patchbench-leaderboard/1"
MAX_AREA_PCT = 25.0
KEY = ("dataset", "split", "eval_n", "eval_seed", "image_size", "model_id", "training", "defense", "defense_params",
       "lam", "amp", "threat")
MACHINE = ("cpu", "threads", "torch", "device", "git_sha", "version")


def _value(v):
    """A cell's value as JSON: None for missing, ints as ints."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    if hasattr(v, "item"):
        v = v.item()
    return v


def _int(v):
    v = _value(v)
    return None if v is None else int(v)


def threat(row, max_area: float) -> str | None:
    """The threat model an attacked cell belongs to, None when a patch exceeds ``max_area`` % of the image."""
    if pd.notna(row.get("patch_px")):
        area = 100 * float(row["patch_px"]) ** 2 / float(row["image_size"]) ** 2
        return f"patch ≤ {max_area:g} % of the image" if area <= max_area + 1e-9 else None
    params = json.loads(row["attack_params"]) if isinstance(row.get("attack_params"), str) else {}
    cls = ATTACKS.get(row.get("attack")) if row.get("attack") in ATTACKS else None
    sig = inspect.signature(cls.__init__).parameters if cls is not None else {}
    if "pixels" in sig:  # N-pixel attacks: N pixels changed
        what = f"l0 {params.get('pixels', sig['pixels'].default)} px"
    elif "max_pixels" in sig:  # Foolbox's SinglePixelAttack: one pixel, many tries
        what = "l0 1 px"
    elif params.get("eps") is not None:
        what = f"linf ε={params['eps']:g}"
    else:
        what = str(row.get("attack"))
    return what + (f" ({params['region']})" if params.get("region") else "")


def _tags(rows: pd.DataFrame) -> list[str]:
    return ["".join(w[0] for w in i.name.split("_")).upper() for i in INDICATORS.values()
            if i.column in rows and rows[i.column].fillna(False).astype(bool).any()]


def _strongest(att: pd.DataFrame) -> dict:
    r = att.sort_values(["accuracy", "created"], ascending=[True, False]).iloc[0]
    return {"attack": r["attack"], "patch_px": _int(r.get("patch_px")), "area_pct": _value(r.get("patch_area_pct")),
            "seed": _int(r.get("attack_seed")), "step": _int(r.get("attack_step")),
            "through": _value(r.get("attack_through")), "params": _value(r.get("attack_params")),
            "accuracy": float(r["accuracy"]), "ci": [float(r["ci_low"]), float(r["ci_high"])], "run_id": r["run_id"],
            "preset": r["preset"], "audit": _tags(att.loc[[r.name]])}


def _provenance(rows: pd.DataFrame) -> list[dict]:
    out = []
    for key, g in rows.groupby(list(MACHINE), dropna=False):
        out.append({**{k: _value(v) for k, v in zip(MACHINE, key)}, "presets": sorted(set(g["preset"].dropna())),
                    "cells": len(g), "newest": str(g["created"].max())})
    return out


def _keys(df: pd.DataFrame, cols: list[str]) -> list[pd.Series]:
    """Group keys with a missing value as a value of its own (a NaN key would not find its twin)."""
    return [df[c].astype(object).where(df[c].notna(), "∅") for c in cols]


def entries(cells: pd.DataFrame, max_area: float = MAX_AREA_PCT) -> list[dict]:
    """The board's entries from stored cells (``ResultStore.load_cells``)."""
    check(0 < max_area <= 100, f"--max-area must be a percentage in (0, 100], got {max_area!r}")
    if cells.empty:
        return []
    df = cells.copy()
    for col in [c for c in (*KEY, *MACHINE, "training", "attack_through", "attack_step", "attack_seed") if c not in df]:
        df[col] = None
    df["lam"] = df["lam"].astype(float)
    att = df[df["condition"] == "attacked"].copy()
    att["threat"] = [threat(r, max_area) for r in att.to_dict("records")]
    att = att[att["threat"].notna()]
    clean = df[df["condition"] == "clean"]
    base = [k for k in KEY if k != "threat"]
    clean_by = {k: g for k, g in clean.groupby(_keys(clean, base))}
    out = []
    for key, g in att.groupby(_keys(att, base) + [att["threat"]]):
        first, c = g.iloc[0], clean_by.get(tuple(key[:-1]))
        audited = [i.column for i in INDICATORS.values() if i.column in g]
        e = {k: _value(first[k]) for k in base}
        e["lam"] = None if e["lam"] is None else float(e["lam"])
        e.update({k: _int(first[k]) for k in ("eval_n", "eval_seed", "image_size")})
        e["defense_params"] = json.loads(first["defense_params"]) if isinstance(first["defense_params"], str) else None
        e.update(threat=key[-1], model=first["model"], clean_accuracy=None, certified_accuracy=None, certified_patch_px=None,
                 robust_accuracy=float(g["accuracy"].min()), strongest_attack=_strongest(g),
                 largest_patch_pct=None if g["patch_px"].isna().all() else
                 round(100 * float(g["patch_px"].max()) ** 2 / float(first["image_size"]) ** 2, 2),
                 attacks=sorted(set(g["attack"])), attacked_cells=len(g),
                 audit={"audited": int(g[audited].notna().any(axis=1).sum()) if audited else 0,
                        "flagged": int(g[audited].fillna(False).astype(bool).any(axis=1).sum()) if audited else 0},
                 provenance=_provenance(g if c is None else pd.concat([g, c])))
        if c is not None:
            newest = c.sort_values("created").iloc[-1]
            e["clean_accuracy"] = float(newest["accuracy"])
            if pd.notna(newest.get("certified_accuracy")):
                e["certified_accuracy"] = float(newest["certified_accuracy"])
                e["certified_patch_px"] = (e["defense_params"] or {}).get("patch_px")
        e["key"] = stable_hash({k: e[k] for k in KEY}, 16)
        out.append(e)
    return sorted(out, key=lambda e: (e["dataset"], e["image_size"], e["model"], e["model_id"], str(e["training"]),
                                      e["threat"], -e["robust_accuracy"]))


def merge(boards: list[list[dict]]) -> list[dict]:
    """Entries of several boards (machines) as one: per key the lowest robust accuracy and its attack,
    the union of the attacks, every machine's provenance."""
    merged: dict[str, dict] = {}
    for board in boards:
        for e in board:
            m = merged.get(e["key"])
            if m is None:
                merged[e["key"]] = json.loads(json.dumps(e))
                continue
            if e["robust_accuracy"] < m["robust_accuracy"]:
                m["robust_accuracy"], m["strongest_attack"] = e["robust_accuracy"], e["strongest_attack"]
            m["attacks"] = sorted(set(m["attacks"]) | set(e["attacks"]))
            if e.get("largest_patch_pct") is not None:
                m["largest_patch_pct"] = max(m.get("largest_patch_pct") or 0.0, e["largest_patch_pct"])
            m["attacked_cells"] += e["attacked_cells"]
            m["audit"] = {k: m["audit"][k] + e["audit"][k] for k in m["audit"]}
            m["provenance"] += e["provenance"]
            for k in ("clean_accuracy", "certified_accuracy"):
                m[k] = m[k] if m[k] is not None else e[k]
    return list(merged.values())


def read_board(path) -> list[dict]:
    """A board written by ``patchbench leaderboard --format json``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PatchbenchError(f"cannot read leaderboard {path}: {type(exc).__name__}") from None
    check(isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("entries"), list),
          f"{path} is not a patchbench leaderboard (format {FORMAT})")
    return data["entries"]


def to_json(board: list[dict], max_area: float) -> str:
    return json.dumps({"format": FORMAT, "max_area_pct": max_area, "key": list(KEY), "entries": board},
                      indent=1, ensure_ascii=False, default=str) + "\n"


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def frame(board: list[dict]) -> pd.DataFrame:
    """The board as a table: one row per entry, strongest first within a model and threat."""
    rows = []
    for e in board:
        s = e["strongest_attack"]
        attack = s["attack"] + ("" if s["patch_px"] is None else f" {int(s['patch_px'])}px") + \
            ("" if s["through"] is None else f" via {s['through']}") + ("" if s["step"] is None else f" step {s['step']}") + \
            ("" if s["seed"] is None else f" seed {s['seed']}")
        defense = e["defense"] + ("" if e["lam"] is None else f" λ={e['lam']:g}")
        if certifies(e["defense"]) and e["certified_patch_px"] is not None:
            defense += f" ({e['certified_patch_px']} px)"
        machines = sorted({p["cpu"] for p in e["provenance"] if p["cpu"]})
        rows.append({"dataset": f"{e['dataset']} {e['image_size']}px", "model": e["model"] + ("" if not e["training"] else f" ({e['training']})"),
                     "defense": defense, "threat": e["threat"] + ("" if e.get("largest_patch_pct") is None
                                                                   else f" (tried ≤ {e['largest_patch_pct']:g} %)"),
                     "clean": _pct(e["clean_accuracy"]),
                     "robust": f"{_pct(e['robust_accuracy'])} [{_pct(s['ci'][0])}, {_pct(s['ci'][1])}]",
                     "certified": _pct(e["certified_accuracy"]), "strongest attack": attack,
                     "attacks": len(e["attacks"]), "audit": (",".join(s["audit"]) + (
                         f" ({e['audit']['flagged']}/{e['audit']['audited']} flagged)" if e["audit"]["audited"] else " (not audited)")).strip(),
                     "git": ",".join(sorted({p["git_sha"] for p in e["provenance"] if p["git_sha"]})),
                     "machine": "; ".join(machines)})
    return pd.DataFrame(rows)


def render_markdown(board: list[dict], max_area: float) -> str:
    if not board:
        return "No attacked cells under these results.\n"
    head = (f"**Leaderboard: robust accuracy (%) under the strongest attack found** (lowest accuracy of any stored "
            f"attacked cell; patches up to {max_area:g} % of the image, the largest tried in brackets; [Wilson 95 %]), clean and "
            f"certified accuracy (%), "
            f"the strongest cell's audit flags (flagged / audited attacked cells), provenance.")
    return head + "\n\n" + frame(board).to_markdown(index=False, disable_numparse=True) + "\n"


def leaderboard(results, fmt: str = "md", max_area: float = MAX_AREA_PCT, merge_files: list | None = None) -> str:
    """``patchbench leaderboard``: the board of the cells under ``results`` merged with the boards in
    ``merge_files``, as markdown (``md``) or JSON (``json``). Inputs are checked before any cell is read."""

    check(fmt in ("md", "json"), f"--format must be md or json, got {fmt!r}")
    check(0 < max_area <= 100, f"--max-area must be a percentage in (0, 100], got {max_area!r}")
    check(Path(results).is_dir(), f"--results {results} is not a directory")
    others = [read_board(f) for f in merge_files or []]
    cells = one_precision(ResultStore(results, read_only=True).load_cells())
    board = merge([entries(cells, max_area), *others])
    check(bool(board), f"no attacked cells under {results}; run `patchbench reproduce` (or `patchbench sweep`) first")
    return to_json(board, max_area) if fmt == "json" else render_markdown(board, max_area)
