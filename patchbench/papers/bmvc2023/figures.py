"""BMVC 2023 figures from stored cells and the models' training histories (PNG, Agg backend), one
PNG per preset, one row of panels per architecture of the preset (the paper's panels are per
architecture: Fig. 2 EfficientNet, Fig. 3 (a) EfficientNet, (b) Inception), each row titled with
the architecture and, given the preset's ``paper_models``, the paper's net it stands for.

* Fig. 2: per model (undefended f, each volumized syllabus g) the training loss per epoch (a) and
  the defense success rate of a 1-pixel attack on held-out test images after each epoch (b).
* Fig. 3: robustness δ = Acc_attack − Acc_clean against the N-pixel count (a) and the patch size
  (b), and the defense success rate β against both (c, d), per model; one line per N-pixel attack
  when the cells hold several (DE ``npixel``, Foolbox's ``single_pixel`` ...).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from patchbench.api import PatchbenchError, save_png, trained_model_metas
from patchbench.papers.bmvc2023.cells import arch_label, archs_of, pixel_counts, volumization_cells


def _methods_first_f(methods) -> list[str]:
    return sorted(set(methods), key=lambda m: (m != "undefended", m))


def histories(cells: pd.DataFrame, preset: str) -> dict[tuple[str, str], list[dict]]:
    """(architecture, method) -> per-epoch history of the model behind the preset's cells (from the
    model JSONs), architectures in the order the preset ran them, f first within each."""
    root = cells.attrs.get("results")
    if root is None:
        raise PatchbenchError("Fig. 2 needs the results directory (load the cells with ResultStore.load_cells)")
    df = cells[(cells["preset"] == preset) & cells.get("method", pd.Series(index=cells.index, dtype=object)).notna()]
    wanted = dict(zip(df["model_id"], zip(df["model"], df["method"])))
    out = {}
    for meta in trained_model_metas(root):
        if meta.get("model_id") in wanted and meta.get("history"):
            out[wanted[meta["model_id"]]] = meta["history"]
    if not out:
        raise PatchbenchError(f"no training histories for preset {preset!r} (models trained by patchbench keep one)")
    order = {a: i for i, a in enumerate(archs_of(df))}
    return dict(sorted(out.items(), key=lambda kv: (order[kv[0][0]], kv[0][1] != "undefended", kv[0][1])))


def training_curves(cells: pd.DataFrame, preset: str, out: Path, paper_models: dict | None = None) -> Path:
    import matplotlib  # reason: matplotlib takes a second to import; only a figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # reason: as above

    hist = histories(cells, preset)
    archs = list(dict.fromkeys(a for a, _ in hist))
    colors = {m: f"C{i}" for i, m in enumerate(_methods_first_f(m for _, m in hist))}
    fig, axes = plt.subplots(len(archs), 2, figsize=(10, 4 * len(archs)), squeeze=False)
    for (ax1, ax2), arch in zip(axes, archs):
        for (a, method), h in hist.items():
            if a != arch:
                continue
            epochs = [r["epoch"] for r in h]
            ax1.plot(epochs, [r.get("Lc") for r in h], marker="o", label=method, color=colors[method])
            if all("val_defense_success" in r for r in h):
                ax2.plot(epochs, [100 * r["val_defense_success"] for r in h], marker="o", label=method, color=colors[method])
        name = arch_label(arch, (paper_models or {}).get(arch))
        ax1.set(xlabel="epoch", ylabel="training loss (PAL for volumized, CE for undefended)", title=f"{name}\n(a) losses")
        ax2.set(xlabel="epoch", ylabel="defense success rate (%)", title=f"{name}\n(b) 1-pixel attack after each epoch")
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
    fig.suptitle(f"BMVC 2023 Fig. 2 — {preset}")
    fig.tight_layout()
    return save_png(fig, out)


def robustness_data(cells: pd.DataFrame, preset: str) -> pd.DataFrame:
    """Long table: arch, method, kind (npixel / patch), attack, magnitude (N or px), δ and β in
    percent (defense ``none``; the patches trained on the undefended model: its own, transfer for
    every g). δ is against the clean accuracy of the same model (architecture and method)."""
    df = volumization_cells(cells, preset)
    df = df[df["defense"] == "none"]
    clean = {k: d["correct"].sum() / d["n"].sum() for k, d in df[df["condition"] == "clean"].groupby(["model", "method"])}
    att = df[df["condition"] == "attacked"].copy()
    # a patch cell has a patch size; every other attacked cell is one of the N-pixel family
    att["kind"] = att["patch_px"].notna().map({True: "patch", False: "npixel"})
    att["pixels"] = pixel_counts(att)
    rows = []
    for (arch, method, kind, attack), sub in att.groupby(["model", "method", "kind", "attack"]):
        if kind == "patch":  # the patches trained on f: f's own, transfer for every g
            sub = sub[sub["patch_source"] == ("self" if method == "undefended" else "undefended")]
        key = "pixels" if kind == "npixel" else "patch_px"
        for mag, g in sub.groupby(key):  # an attack without an N (local search) has no point on an N axis
            acc = g["correct"].sum() / g["n"].sum()
            rows.append({"arch": arch, "method": method, "kind": kind, "attack": attack, "magnitude": float(mag),
                         "delta": 100 * (acc - clean.get((arch, method), float("nan"))),
                         "beta": 100 * g["kept_correct"].sum() / max(g["n_clean_correct"].sum(), 1)})
    return pd.DataFrame(rows, columns=["arch", "method", "kind", "attack", "magnitude", "delta", "beta"])


def robustness(cells: pd.DataFrame, preset: str, out: Path, paper_models: dict | None = None) -> Path:
    import matplotlib  # reason: matplotlib takes a second to import; only a figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # reason: as above

    data = robustness_data(cells, preset)
    if data.empty:
        raise PatchbenchError(f"no attacked cells for preset {preset!r}")
    archs = [a for a in archs_of(volumization_cells(cells, preset)) if a in set(data["arch"])]
    panels = [("npixel", "delta", "(a) δ vs N-pixel count", "N pixels"), ("patch", "delta", "(b) δ vs patch size", "patch side (px)"),
              ("npixel", "beta", "(c) β vs N-pixel count", "N pixels"), ("patch", "beta", "(d) β vs patch size", "patch side (px)")]
    colors = {m: f"C{i}" for i, m in enumerate(_methods_first_f(data["method"]))}
    styles = {a: s for a, s in zip(sorted(set(data.loc[data["kind"] == "npixel", "attack"])), ("-", "--", ":", "-."))}
    fig, axes = plt.subplots(len(archs), 4, figsize=(18, 4 * len(archs)), squeeze=False)
    for row, arch in zip(axes, archs):
        name = arch_label(arch, (paper_models or {}).get(arch))
        for ax, (kind, col, title, xlabel) in zip(row, panels):
            sub = data[(data["arch"] == arch) & (data["kind"] == kind)]
            for (method, attack), g in sub.groupby(["method", "attack"]):
                g = g.sort_values("magnitude")
                label = method + (f", {attack}" if kind == "npixel" and len(styles) > 1 else "")
                ax.plot(g["magnitude"], g[col], marker="o", label=label, color=colors[method],
                        linestyle=styles.get(attack, "-") if kind == "npixel" else "-")
            ax.set(title=f"{name}\n{title}", xlabel=xlabel, ylabel="δ (pp)" if col == "delta" else "β (%)")
            ax.grid(alpha=0.3)
            if len(sub):
                ax.legend(fontsize=8)
    fig.suptitle(f"BMVC 2023 Fig. 3 — {preset}")
    fig.tight_layout()
    return save_png(fig, out)
