"""The volumization cells as BMVC 2023's tables and figures read them: a preset's cells, the
N-pixel family among them, pooled rates with Wilson intervals, and the labels that tie our nets to
the paper's (``volumetric.paper_models``: ``arch = paper's X`` for the same net, ``arch ≈ paper's X``
for a stand-in)."""

from __future__ import annotations

import json

import pandas as pd

from patchbench.api import PatchbenchError, TableContext, preset_cells, wilson_ci

REFERENCE = "bmvc2023_volumization_table2"
REPORTED_ONLY = "reported in the paper, not run"
NA = "-"
PAPER_ARCHS = {"efficientnet_b0": "Effn", "vgg16": "VGG", "inception_v3": "Inception", "resnet50": "ResNet"}
TOP_ARCHS = ("efficientnet_b0", "vgg16", "inception_v3")  # the paper's Table 2 top columns, in its order
DATASETS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "imagenet": "ImageNet"}  # the paper's, in its order
PAPER_ATTACK = "single_pixel"  # Foolbox's SinglePixelAttack: the 1-pixel attack behind the paper's Acc_attack
ATTACK_NAMES = {"single_pixel": "Foolbox single-pixel", "multiple_pixels": "Foolbox multiple-pixels",
                "local_search": "Foolbox local search", "npixel": "DE"}
PAPER_METHODS = {"psd": "PSD", "liu2020": "Liu et al.", "jujutsu": "Jujutsu", "lgs": "LGS", "vax-a-net": "Vax-a-Net",
                 "dw": "DW"}


def method_label(method: str) -> str:
    if method == "undefended":
        return "Undefended"
    if method in PAPER_METHODS:
        return PAPER_METHODS[method]
    name = method.removeprefix("volumized-")
    return f"{name.upper() if len(name) <= 4 else name}/Ours"


def arch_label(arch: str, paper_model: str | None) -> str:
    """Our net and the paper's it stands for: ``vgg16 = paper's VGG``, ``small_vgg ≈ paper's VGG``."""
    if not paper_model:
        return arch
    return f"{arch} {'=' if paper_model == arch else '≈'} paper's {PAPER_ARCHS.get(paper_model, paper_model)}"


def paper_models(ctx: TableContext, preset: str) -> dict:
    """``volumetric.paper_models`` of ``preset`` (our arch -> the paper's); {} when it has none."""
    sections = ctx.sections if preset == ctx.preset else (ctx.sections_of(preset) if ctx.sections_of else {})
    return dict(getattr(sections.get("volumetric"), "paper_models", None) or {})


def pooled(df: pd.DataFrame, hits: str, total: str) -> tuple[float, float, float] | None:
    """(rate, low, high) in percent from the summed counts of ``df``; None without cells."""
    if df.empty or df[total].isna().all():
        return None
    k, n = int(df[hits].sum()), int(df[total].sum())
    lo, hi = wilson_ci(k, n)
    return 100 * k / max(n, 1), 100 * lo, 100 * hi


def fmt_rate(v) -> str:
    return NA if v is None else f"{v[0]:.2f} [{v[1]:.1f}, {v[2]:.1f}]"


def volumization_cells(cells: pd.DataFrame, preset: str) -> pd.DataFrame:
    df = preset_cells(cells, preset, "volumization")
    if "method" not in df or df["method"].isna().all():
        raise PatchbenchError(f"preset {preset!r} has no volumization cells; run `patchbench reproduce bmvc2023` first")
    return df.drop_duplicates("run_id", keep="last")


def archs_of(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df.sort_values("created")["model"]))


def pixel_counts(df: pd.DataFrame) -> pd.Series:
    """N of each cell's N-pixel attack (``single_pixel`` changes one pixel; None: no fixed N, e.g. local search)."""
    def n(attack, params):
        p = json.loads(params) if isinstance(params, str) else {}
        return p.get("pixels", 1 if attack == PAPER_ATTACK else None)

    return pd.Series([n(a, s) for a, s in zip(df["attack"], df["attack_params"])], index=df.index, dtype=object)


def pixel_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The attacked cells without a patch (the N-pixel family) with their N in ``pixels``."""
    att = df[(df["condition"] == "attacked") & df["patch_px"].isna()]
    return att.assign(pixels=pixel_counts(att))


def pixel_attacks(att: pd.DataFrame) -> list[tuple[str, int | None]]:
    """(attack name, its smallest N) per N-pixel attack in ``att``, the paper's attack first."""
    names = sorted(set(att["attack"].dropna()), key=lambda a: (a != PAPER_ATTACK, a != "npixel", a))
    out = []
    for a in names:
        ns = att.loc[att["attack"] == a, "pixels"].dropna()
        out.append((a, int(ns.min()) if len(ns) else None))
    return out


def attack_title(attack: str, n: int | None) -> str:
    name = ATTACK_NAMES.get(attack, attack)
    return f"{n}-pixel, {name}" if n is not None else name
