"""BMVC 2023 figures from stored cells and the models' training histories (PNG, Agg backend).

* Fig. 2: per model (undefended f, each volumized syllabus g) the training loss per epoch (a) and
  the defense success rate of a 1-pixel attack on held-out test images after each epoch (b).
* Fig. 3: robustness δ = Acc_attack − Acc_clean against the N-pixel count (a) and the patch size
  (b), and the defense success rate β against both (c, d), per model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from patchbench.api import PatchbenchError, save_png


def histories(cells: pd.DataFrame, preset: str) -> dict[str, list[dict]]:
    """method -> per-epoch history of the model behind the preset's cells (from the model JSONs)."""
    root = cells.attrs.get("results")
    if root is None:
        raise PatchbenchError("Fig. 2 needs the results directory (load the cells with ResultStore.load_cells)")
    df = cells[(cells["preset"] == preset) & cells.get("method", pd.Series(index=cells.index, dtype=object)).notna()]
    wanted = dict(zip(df["model_id"], df["method"]))
    out = {}
    for meta_file in sorted((Path(root) / "artifacts" / "models").glob("*.json")):
        meta = json.loads(meta_file.read_text())
        if meta.get("model_id") in wanted and meta.get("history"):
            out[wanted[meta["model_id"]]] = meta["history"]
    if not out:
        raise PatchbenchError(f"no training histories for preset {preset!r} (models trained by patchbench keep one)")
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "undefended", kv[0])))


def training_curves(cells: pd.DataFrame, preset: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = histories(cells, preset)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for method, h in hist.items():
        epochs = [r["epoch"] for r in h]
        ax1.plot(epochs, [r.get("Lc") for r in h], marker="o", label=method)
        if all("val_defense_success" in r for r in h):
            ax2.plot(epochs, [100 * r["val_defense_success"] for r in h], marker="o", label=method)
    ax1.set(xlabel="epoch", ylabel="training loss (PAL for volumized, CE for undefended)", title="(a) losses")
    ax2.set(xlabel="epoch", ylabel="defense success rate (%)", title="(b) 1-pixel attack after each epoch")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"BMVC 2023 Fig. 2 — {preset}")
    fig.tight_layout()
    return save_png(fig, out)


def robustness_data(cells: pd.DataFrame, preset: str) -> pd.DataFrame:
    """Long table: method, kind (N-pixel / patch), magnitude (N or px), δ and β in percent (defense
    ``none``; the patches trained on the undefended model: its own, transfer for every g)."""
    from patchbench.papers.bmvc2023.cells import pixel_counts, volumization_cells

    df = volumization_cells(cells, preset)
    df = df[df["defense"] == "none"]
    clean = df[df["condition"] == "clean"].groupby("method").apply(lambda d: d["correct"].sum() / d["n"].sum())
    rows = []
    att = df[df["condition"] == "attacked"].copy()
    att["pixels"] = pixel_counts(att)
    for (method, kind), sub in att.assign(kind=att["attack"].map(lambda a: "npixel" if a == "npixel" else "patch")).groupby(["method", "kind"]):
        if kind == "patch":  # the patches trained on f: f's own, transfer for every g
            sub = sub[sub["patch_source"] == ("self" if method == "undefended" else "undefended")]
        key = "pixels" if kind == "npixel" else "patch_px"
        for mag, g in sub.groupby(key):
            acc = g["correct"].sum() / g["n"].sum()
            rows.append({"method": method, "kind": kind, "magnitude": float(mag),
                         "delta": 100 * (acc - clean.get(method, float("nan"))),
                         "beta": 100 * g["kept_correct"].sum() / max(g["n_clean_correct"].sum(), 1)})
    return pd.DataFrame(rows)


def robustness(cells: pd.DataFrame, preset: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = robustness_data(cells, preset)
    if data.empty:
        raise PatchbenchError(f"no attacked cells for preset {preset!r}")
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    panels = [("npixel", "delta", "(a) δ vs N-pixel count", "N pixels"), ("patch", "delta", "(b) δ vs patch size", "patch side (px)"),
              ("npixel", "beta", "(c) β vs N-pixel count", "N pixels"), ("patch", "beta", "(d) β vs patch size", "patch side (px)")]
    colors = {m: f"C{i}" for i, m in enumerate(sorted(data["method"].unique(), key=lambda m: (m != "undefended", m)))}
    for ax, (kind, col, title, xlabel) in zip(axes.flat, panels):
        sub = data[data["kind"] == kind]
        for method, g in sub.groupby("method"):
            g = g.sort_values("magnitude")
            ax.plot(g["magnitude"], g[col], marker="o", label=method, color=colors[method])
        ax.set(title=title, xlabel=xlabel, ylabel="δ (pp)" if col == "delta" else "β (%)")
        ax.grid(alpha=0.3)
        if len(sub):
            ax.legend(fontsize=8)
    fig.suptitle(f"BMVC 2023 Fig. 3 — {preset}")
    fig.tight_layout()
    return save_png(fig, out)
