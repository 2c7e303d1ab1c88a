"""ICAART 2022 figures rebuilt from stored cells (PNG, matplotlib's non-interactive Agg backend).

``lambda_curve`` is Fig. 5: top-1 accuracy against the smoothing factor λ for LGS,
SLGS and WLGS — left, on clean and on attacked images; right, the average of the two.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from patchbench.api import PatchbenchError, save_png
from patchbench.papers.icaart2022.tables import select_cells

CURVE_DEFENSES = ("lgs", "slgs", "wlgs")
_COLORS = {"lgs": "tab:blue", "slgs": "tab:orange", "wlgs": "tab:green"}


def lambda_curve_data(cells: pd.DataFrame, preset: str, attack: str = "lavan", patch_px: int | None = None) -> pd.DataFrame:
    """Long table: defense, λ, clean accuracy, attacked accuracy, average (percent).

    ``patch_px`` None picks the middle one of the preset's sizes (the paper plots 52 px, the
    middle of 42/52/60).
    """
    df = select_cells(cells, preset, attack)
    if df.empty:
        raise PatchbenchError(f"no stored cells for preset {preset!r}; run `patchbench sweep --preset {preset}` first")
    sizes = sorted(int(s) for s in df.loc[df["condition"] == "attacked", "patch_px"].dropna().unique())
    if not sizes:
        raise PatchbenchError(f"no {attack} cells for preset {preset!r}")
    if patch_px is None:
        patch_px = sizes[len(sizes) // 2]
    elif patch_px not in sizes:
        raise PatchbenchError(f"no {attack} cells at {patch_px} px for preset {preset!r}; stored sizes: {sizes}")
    rows = []
    for d in CURVE_DEFENSES:
        sub = df[(df["defense"] == d) & df["lam"].notna()]
        for lam in sorted(sub["lam"].unique()):
            at = sub[sub["lam"] == lam]
            clean = at[at["condition"] == "clean"]
            adv = at[(at["condition"] == "attacked") & (at["patch_px"] == patch_px)]
            if len(clean) and len(adv):
                c, a = 100 * float(clean["accuracy"].iloc[-1]), 100 * float(adv["accuracy"].mean())  # mean over seeds
                rows.append({"defense": d, "lam": float(lam), "clean": c, "attacked": a, "average": (c + a) / 2,
                             "patch_px": patch_px})
    if not rows:
        raise PatchbenchError(f"no LGS/SLGS/WLGS cells with λ for preset {preset!r}")
    return pd.DataFrame(rows)


def lambda_curve(cells: pd.DataFrame, preset: str, out: str | Path, attack: str = "lavan",
                 patch_px: int | None = None) -> Path:
    """Write ICAART Fig. 5 for ``preset`` to ``out`` (PNG, atomically); returns the path."""
    import matplotlib  # reason: matplotlib takes a second to import; only a figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # reason: as above

    data = lambda_curve_data(cells, preset, attack, patch_px)
    px = int(data["patch_px"].iloc[0])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for d, sub in data.groupby("defense", sort=False):
        color = _COLORS.get(d)
        left.plot(sub["lam"], sub["clean"], "-o", color=color, label=f"{d.upper()} clean", ms=3)
        left.plot(sub["lam"], sub["attacked"], "--s", color=color, label=f"{d.upper()} attacked", ms=3)
        right.plot(sub["lam"], sub["average"], "-o", color=color, label=d.upper(), ms=3)
    left.set(title=f"with and without attack ({attack} {px} px)", xlabel="λ", ylabel="top-1 accuracy (%)")
    right.set(title="average of clean and attacked", xlabel="λ", ylabel="top-1 accuracy (%)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Accuracy vs smoothing factor λ — preset {preset} (ICAART 2022 Fig. 5)", fontsize=10)
    fig.tight_layout()
    return save_png(fig, out)


def adaptive_table(cells: pd.DataFrame, preset: str) -> pd.DataFrame:
    """ICAART Fig. 10 as numbers: targeted success (%) of the adaptive LaVAN vs training step,
    one column per defense it was trained through (evaluated through that same defense)."""
    df = cells[(cells["preset"] == preset) & (cells["attack"] == "lavan-adaptive")]
    df = df[df["defense"] == df["attack_through"]]
    if df.empty:
        raise PatchbenchError(f"no adaptive-attack cells for preset {preset!r}; run `patchbench reproduce` "
                              "with a preset that has an adaptive section")
    df = df.sort_values("created").drop_duplicates(["attack_through", "lam", "patch_px", "attack_step"], keep="last")
    lam = lambda r: "" if pd.isna(r["lam"]) else f" λ={r['lam']:g}"  # noqa: E731 (λ-free: PatchCleanser)
    df = df.assign(column=df.apply(lambda r: f"{r['attack_through'].upper()}{lam(r)} ({int(r['patch_px'])}px)", axis=1),
                   success=100 * df["attack_success_rate"])
    table = df.pivot_table(index="attack_step", columns="column", values="success").reset_index()
    table = table.rename(columns={"attack_step": "step"})
    table["step"] = table["step"].astype(int)
    return table.round(2)


def adaptive_curve(cells: pd.DataFrame, preset: str, out: str | Path) -> Path:
    """ICAART Fig. 10: success rate of the white-box adaptive LaVAN (Eq. 13) vs training step."""
    import matplotlib  # reason: matplotlib takes a second to import; only a figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # reason: as above

    table = adaptive_table(cells, preset)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for col in table.columns[1:]:
        ax.plot(table["step"], table[col], "-o", ms=3, label=col)
    ax.set(xlabel="training step", ylabel="targeted success (%)", ylim=(-2, 102),
           title=f"White-box adaptive LaVAN through the defense — preset {preset} (ICAART Fig. 10)")
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, out)
