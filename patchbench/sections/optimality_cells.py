"""The patch-optimality section's cells: which stored cell is which (its manifest), each defended
model's optimality from the cells' per-image predictions, and the audit verdicts the section writes.

The run step (:mod:`.optimality`) writes ``<results>/optimality/<preset>.parquet``: one row per cell it
evaluated or reused — the target (model, defense, λ), the attack (``none`` for the clean cell), the
patch side, its role (``clean``, ``curve``: a size of the curves, ``unbounded``: the half-image patch)
and the run id. Everything below reads the cells' predictions through it
(``ResultStore.load_predictions``), so the table shows exactly the cells the step ran.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from patchbench.attacks.base import NO_ATTACK
from patchbench.audit.comparisons import random_beats_gradient, unconstrained_failure_by_area
from patchbench.audit.indicators import AUDIT_RANDOM_BEATS_GRADIENT, AUDIT_UNCONSTRAINED_FAILURE
from patchbench.errors import PatchbenchError
from patchbench.store.results import ResultStore
from patchbench.sections.optimality_metric import Optimality, first_fooling_area, optimality
from patchbench.util import atomic_write, console

SECTION = "patch-optimality"
ADAPTIVE = "lavan-adaptive"
RANDOM_SEARCH = "patch_rs"
GRADIENT = "lavan"  # the gradient attack Patch-RS spends the queries of (it is built from its entry)
LABELS = {"lavan": "LaVAN", "adversarial_patch": "Adv. Patch", RANDOM_SEARCH: "Patch-RS", ADAPTIVE: "adaptive LaVAN"}
MANIFEST_DIR = Path("optimality")
NOTES = "audit_notes"


def manifest_path(root, preset: str) -> Path:
    return Path(root) / MANIFEST_DIR / f"{preset}.parquet"


def write_manifest(store: ResultStore, preset: str, rows: pd.DataFrame, sizes: list[int], half: int | None) -> pd.DataFrame:
    """The section's cells among ``rows`` (what the run step's evaluations returned) at the curves'
    ``sizes`` and the half-image side ``half``: the last step of each adaptive run, every other cell as
    it is; written atomically, replacing the previous manifest of ``preset``."""
    df = rows
    ad = df[df["attack"] == ADAPTIVE]
    if len(ad):
        last = ad.groupby(["defense", ad["lam"].astype(float).fillna(-1.0), "patch_px"])["attack_step"].transform("max")
        df = df.drop(ad.index[ad["attack_step"] != last])
    df = df[df["patch_px"].isna() | df["patch_px"].isin(sizes + ([half] if half else []))]
    role = np.where(df["condition"] == "clean", "clean", np.where(df["patch_px"] == half, "unbounded", "curve"))
    out = pd.DataFrame({"preset": preset, "model": df["model"].to_numpy(), "model_id": df["model_id"].to_numpy(),
                        "image_size": df["image_size"].to_numpy(), "defense": df["defense"].to_numpy(),
                        "lam": df["lam"].astype(float).to_numpy(), "attack": df["attack"].to_numpy(),
                        "target": (df["target"] if "target" in df else pd.Series(None, index=df.index)).astype(float).to_numpy(),
                        "patch_px": df["patch_px"].astype(float).to_numpy(), "role": role, "run_id": df["run_id"].to_numpy()})
    out = out.drop_duplicates("run_id")
    buf = io.BytesIO()
    out.to_parquet(buf, index=False)
    atomic_write(manifest_path(store.root, preset), buf.getvalue())
    return out


def read_manifest(root, preset: str) -> pd.DataFrame | None:
    path = manifest_path(root, preset)
    return pd.read_parquet(path) if path.is_file() else None


@dataclass
class Target:
    """One defended model (model × defense at λ) and its attacks' scores."""

    preset: str
    model: str
    defense: str
    lam: float | None
    n: int
    scores: Optimality
    best_at_largest: float  # A*'s robust accuracy with the largest patch of the curves
    unconstrained: dict[str, bool]  # attack -> at half the image still misses > 5 % of the images it attacks
    missing: list[str]  # attack labels left out: a size's cell missing
    rows: pd.DataFrame  # the manifest rows of this target


def _correct(store: ResultStore, rid: str, index: np.ndarray) -> np.ndarray:
    p = store.load_predictions(rid).set_index("index").reindex(index)
    if p["pred"].isna().any():
        raise PatchbenchError(f"cell {rid} has no prediction for some of the section's images; rerun the section")
    return np.array(p["pred"] == p["label"], dtype=bool)


def evaluate_targets(root, manifest: pd.DataFrame) -> list[Target]:
    """Every target of a manifest, its attacks' distances from the stored predictions, scored."""
    store = ResultStore(root, read_only=True)
    out = []
    keyed = manifest.assign(lam_key=manifest["lam"].fillna(-1.0))
    for (defense, lam_key), g in keyed.groupby(["defense", "lam_key"], sort=False):
        clean = g[g["role"] == "clean"]
        if clean.empty:
            continue
        first = store.load_predictions(clean["run_id"].iloc[0])
        index = first["index"].to_numpy()
        clean_correct = np.array(first["pred"] == first["label"], dtype=bool)
        labels = first["label"].to_numpy()
        size = int(g["image_size"].iloc[0])
        curve = sorted(int(s) for s in g.loc[g["role"] == "curve", "patch_px"].unique())
        areas = [s * s / size ** 2 for s in curve]
        half = g.loc[g["role"] == "unbounded", "patch_px"]
        distances, unconstrained, missing = {}, {}, []
        for attack in [a for a in dict.fromkeys(g["attack"]) if a != NO_ATTACK]:
            mine = g[g["attack"] == attack].set_index("patch_px")["run_id"]
            if any(float(s) not in mine.index for s in curve):
                missing.append(LABELS.get(attack, attack))
                continue
            correct = [_correct(store, mine[float(s)], index) for s in curve]
            distances[attack] = first_fooling_area(clean_correct, correct, areas)
            if len(half) and float(half.iloc[0]) in mine.index:
                h = int(half.iloc[0])
                reach = first_fooling_area(clean_correct, correct + [_correct(store, mine[float(h)], index)],
                                           areas + [h * h / size ** 2])
                # a targeted patch attempts the correct images of the other classes (as its success rate counts them)
                target = g.loc[g["attack"] == attack, "target"] if "target" in g else pd.Series(dtype=float)
                attempted = clean_correct & (labels != target.dropna().iloc[0]) if target.notna().any() else clean_correct
                unconstrained[attack] = bool(unconstrained_failure_by_area(reach, attempted, h * h / size ** 2))
        if not distances:
            continue
        scores = optimality(distances, areas)
        out.append(Target(str(g["preset"].iloc[0]), str(g["model"].iloc[0]), str(defense),
                          None if lam_key < 0 else float(lam_key), len(index), scores,
                          float((scores.best > areas[-1]).mean()), unconstrained, missing, g))
    return out


def write_verdicts(preset: str, store: ResultStore) -> pd.DataFrame | None:
    """Unconstrained failure and random search beating the gradient attack, per cell of ``preset``'s
    section (its manifest), into ``<results>/audit/cells/<preset>.optimality.parquet``."""
    manifest = read_manifest(store.root, preset)
    if manifest is None or manifest.empty:
        return None
    rows: dict[str, dict] = {}

    def mark(rid: str, column: str, fired: bool, note: str) -> None:
        r = rows.setdefault(rid, {"run_id": rid, "preset": preset, AUDIT_UNCONSTRAINED_FAILURE: pd.NA,
                                  AUDIT_RANDOM_BEATS_GRADIENT: pd.NA, NOTES: ""})
        r[column] = bool(fired) or (r[column] is True)
        if fired:
            r[NOTES] = (r[NOTES] + " | " if r[NOTES] else "") + note

    for t in evaluate_targets(store.root, manifest):
        where = f"{t.defense}{'' if t.lam is None else f' λ {t.lam:g}'}"
        for attack, fired in t.unconstrained.items():
            for rid in t.rows.loc[t.rows["attack"] == attack, "run_id"]:
                mark(rid, AUDIT_UNCONSTRAINED_FAILURE, fired,
                     f"unconstrained failure: {LABELS.get(attack, attack)} through {where}, with a patch of half the image, still "
                     "misses more than 5 % of the images it attacks (correctly classified; a targeted one: of the other classes)")
        grad = t.rows[(t.rows["attack"] == GRADIENT) & (t.rows["role"] == "curve")].set_index("patch_px")["run_id"]
        rand = t.rows[(t.rows["attack"] == RANDOM_SEARCH) & (t.rows["role"] == "curve")].set_index("patch_px")["run_id"]
        for px in grad.index.intersection(rand.index):
            g, r = store.read_cell(grad[px]), store.read_cell(rand[px])
            half = math.hypot((g["ci_high"] - g["ci_low"]) / 2, (r["ci_high"] - r["ci_low"]) / 2)
            fired = bool(random_beats_gradient(r["accuracy"], g["accuracy"], half))
            mark(grad[px], AUDIT_RANDOM_BEATS_GRADIENT, fired,
                 f"random search beats the gradient attack: Patch-RS at LaVAN's queries leaves {100 * r['accuracy']:.1f} % "
                 f"through {where} at {int(px)} px, LaVAN {100 * g['accuracy']:.1f} % (interval ±{100 * half:.1f})")
    if not rows:
        return None
    out = pd.DataFrame(list(rows.values()))
    for col in (AUDIT_UNCONSTRAINED_FAILURE, AUDIT_RANDOM_BEATS_GRADIENT):
        out[col] = out[col].astype("boolean")
    store.write_audit(f"{preset}.optimality", out)
    fired = {c: int(out[c].fillna(False).sum()) for c in (AUDIT_UNCONSTRAINED_FAILURE, AUDIT_RANDOM_BEATS_GRADIENT)}
    console.print(f"{SECTION} {preset}: {len(out)} cells checked; unconstrained failure on "
                  f"{fired[AUDIT_UNCONSTRAINED_FAILURE]}, random search beats the gradient attack on {fired[AUDIT_RANDOM_BEATS_GRADIENT]}")
    return out
