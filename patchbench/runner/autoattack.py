"""AutoAttack cross-check of a preset's ε-bounded (L∞) evasion cells (TOMM 2022 Table 6).

For each model (training objective) of the preset with stored cells: the cached model (never
trained here), the cells' own evaluation images (the indices their predictions were stored with;
optionally the first ``n``), AutoAttack (torchattacks' implementation of Croce & Hein 2020) at
each distinct ε of the preset's L∞ rows, and one row per stored attacked cell: the reported robust
accuracy and AutoAttack's on the same images, each with its 95 % Wilson interval, and
``audit_autoattack_gap``: reported − AutoAttack > ``interval``, the lower half-width of the
reported cell's Wilson interval on the compared images (so it fires where AutoAttack's accuracy
falls below that interval; :func:`patchbench.audit.comparisons.autoattack_gap`).

An image is robust under AutoAttack when the model classifies it correctly clean and after the
attack (as in the reference code: the clean image lies in the ε-ball, so one misclassified clean is
not robust, whatever a cell's attack returned). torchattacks' AutoAttack keeps torchattacks' defaults:
"standard" is APGD-CE, APGD-T (all other classes as targets), FAB-T, 10 steps each (the reference
code: 100), and Square at 5000 queries, one restart each, each attack on the images still robust;
"plus" adds APGD-DLR and FAB with 5 restarts; "rand" is APGD-CE and APGD-DLR with EOT over 20
draws. The per-image result is cached in ``<results>/audit/autoattack/<key>.parquet`` (with a
``.json`` of its key), keyed by model id, ε, images, version, seed, batch size and torchattacks'
version: a rerun only reads it.

The one module of :mod:`patchbench.audit` above the store, the model cache, the data and the
presets (tests/test_layout.py); nothing else in the package imports it. ``python -m
patchbench.runner.autoattack --preset P --results DIR [--n N]`` prints the table and writes it as
markdown (``make demo-tomm AUDIT=autoattack``).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from patchbench.attacks import LinfAttack, attack_class, evasion_label
from patchbench.audit.comparisons import autoattack_gap
from patchbench.audit.indicators import AUDIT_AUTOATTACK_GAP, INDICATORS
from patchbench.cache.models import ensure_model, model_path, needs_training, with_training
from patchbench.config import Preset
from patchbench.data import iterate, load_split
from patchbench.defenses.base import UNDEFENDED
from patchbench.devices import resolve_device
from patchbench.errors import PatchbenchError, check, check_writable_dir, is_int, is_number
from patchbench.papers import get_paper
from patchbench.presets import load_preset
from patchbench.store.results import ResultStore, now_utc, one_precision, wilson_ci
from patchbench.table import render
from patchbench.util import atomic_write, console, progress_bar, stable_hash

INSTALL = "the AutoAttack cross-check needs torchattacks: pip install -e '.[bench]'"
VERSIONS = ("standard", "plus", "rand")
SEED = 0
CACHE = Path("audit") / "autoattack"  # under the results directory


def load_torchattacks():
    """torchattacks (the ``bench`` extra), or a one-line error saying how to install it."""
    try:
        import torchattacks  # reason: optional dependency (the bench extra), refused in one line when missing
    except ImportError:
        raise PatchbenchError(INSTALL) from None
    return torchattacks


def autoattack_correct(model, x: torch.Tensor, y: torch.Tensor, eps: float, version: str = "standard",
                       seed: int = SEED, n_classes: int | None = None) -> torch.Tensor:
    """Per image (bool, on the CPU): ``model`` classifies ``x`` ([0, 1] images) correctly, clean and
    after torchattacks' L∞ AutoAttack at ``eps``. The global random state is left as it was."""
    ta = load_torchattacks()
    check(version in VERSIONS, f"AutoAttack version must be one of {', '.join(VERSIONS)}, got {version!r}")
    n_classes = n_classes or model.num_classes
    cuda = [x.device.index if x.device.index is not None else torch.cuda.current_device()] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # torchattacks seeds torch's global generators
        adv = ta.AutoAttack(model, norm="Linf", eps=eps, version=version, n_classes=n_classes, seed=seed)(x, y).detach()
    check(float((adv - x).abs().max()) <= eps + 1e-6 and 0 <= float(adv.min()) and float(adv.max()) <= 1,
          f"AutoAttack left the ε = {eps:g} ball or [0, 1]")
    with torch.no_grad():
        return ((model(x).argmax(1) == y) & (model(adv).argmax(1) == y)).cpu()


def cached_autoattack(results: Path, key: dict, indices: torch.Tensor, compute) -> tuple[torch.Tensor, dict]:
    """``compute() -> bool per image of indices``, once per ``key``: stored under
    ``results/audit/autoattack/<hash of key>.parquet`` (index, correct) with a ``.json`` of the key
    and its run time; a rerun with the same key reads it (-> (correct, that json))."""
    key = json.loads(json.dumps(key, sort_keys=True, default=str))
    path = Path(results) / CACHE / f"{stable_hash(key, 20)}.parquet"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        try:
            meta, stored = json.loads(meta_path.read_text()), pd.read_parquet(path)
            if meta["key"] == key and stored["index"].tolist() == indices.tolist():
                return torch.tensor(stored["correct"].to_numpy(), dtype=torch.bool), meta
        except Exception:  # unreadable or foreign: computed again and overwritten
            pass
    t0 = time.perf_counter()
    correct = compute().bool().cpu()
    meta = {"key": key, "seconds": round(time.perf_counter() - t0, 3), "created": now_utc(),
            "robust": int(correct.sum()), "n": len(correct)}
    buf = io.BytesIO()
    pd.DataFrame({"index": indices.cpu().numpy(), "correct": correct.numpy()}).to_parquet(buf, index=False)
    atomic_write(path, buf.getvalue())
    atomic_write(meta_path, json.dumps(meta, indent=2))  # last: the .json present => the parquet complete
    return correct, meta


def compare(reported: torch.Tensor, autoattack: torch.Tensor) -> dict:
    """One row of the cross-check from per-image robustness (bool) on the same images: both
    accuracies with their 95 % Wilson intervals, the gap, the interval and the indicator."""
    reported, autoattack = torch.as_tensor(reported, dtype=torch.bool), torch.as_tensor(autoattack, dtype=torch.bool)
    check(reported.shape == autoattack.shape and reported.dim() == 1 and len(reported) > 0,
          "reported and AutoAttack results must be one bool per image, for the same images")
    n, k_rep, k_aa = len(reported), int(reported.sum()), int(autoattack.sum())
    (lo, hi), (alo, ahi) = wilson_ci(k_rep, n), wilson_ci(k_aa, n)
    rep, aa = k_rep / n, k_aa / n
    return {"n": n, "reported_acc": rep, "reported_low": lo, "reported_high": hi, "autoattack_acc": aa,
            "autoattack_low": alo, "autoattack_high": ahi, "gap": rep - aa, "interval": rep - lo,
            "broken_by_autoattack": int((reported & ~autoattack).sum()),
            AUDIT_AUTOATTACK_GAP: bool(autoattack_gap(rep, aa, max(rep - lo, 0.0)))}


def linf_rows(preset: Preset) -> dict[str, set[float]]:
    """The preset's L∞ evasion rows: attack name -> its ε values (numbers only)."""
    rows: dict[str, set[float]] = {}
    for e in preset.evasion:
        try:
            linf = issubclass(attack_class(e.name, patch=False), LinfAttack)
        except PatchbenchError:  # an attack of a plugin that is not loaded
            continue
        if linf and is_number(e.eps):
            rows.setdefault(e.name, set()).add(float(e.eps))
    return rows


def stored_cells(preset: Preset, results: Path) -> pd.DataFrame:
    """The preset's stored attacked, undefended cells of its L∞ rows on its evaluation images, with ε."""
    d, rows = preset.data, linf_rows(preset)
    check(bool(rows), f"preset {preset.name} has no L∞ evasion attacks (evasion: FGSM, PGD, CW, ...) to cross-check")
    c = one_precision(ResultStore(results, read_only=True).load_cells())
    if len(c):
        c = c[(c["preset"] == preset.name) & (c["condition"] == "attacked") & (c["defense"] == UNDEFENDED)
              & (c["dataset"] == d.dataset) & (c["split"] == d.eval_split) & (c["image_size"] == d.image_size)
              & (c["eval_n"] == d.eval_n) & (c["eval_seed"] == d.eval_seed)].copy()
        c["eps"] = [json.loads(p).get("eps") if isinstance(p, str) else None for p in c["attack_params"]]
        c = c[[a in rows and is_number(e) and float(e) in rows[a] for a, e in zip(c["attack"], c["eps"])]]
    if c.empty:
        raise PatchbenchError(f"no stored L∞ evasion cells of preset {preset.name} in {results}; run "
                              f"`patchbench reproduce {preset.paper}` (or `patchbench sweep --preset {preset.name}`) first")
    order = {evasion_label(e): i for i, e in reversed(list(enumerate(preset.evasion)))}
    c = c.assign(eps=c["eps"].astype(float), _order=c["attack_label"].map(order))
    return c.sort_values(["eps", "_order", "created"]).drop(columns="_order")


def require_model(preset: Preset, training: str, results: Path) -> Preset:
    """``preset`` with its ``training`` objective; a one-line error when that model is not cached."""
    p = with_training(preset, training)
    path = model_path(p, ResultStore(results, read_only=True))
    if needs_training(p) and not (path.exists() and path.with_suffix(".json").exists()):
        raise PatchbenchError(f"model {p.model.arch} ({training}) of preset {preset.name} is not cached in {results}; "
                              f"run `patchbench reproduce {preset.paper}` first (the AutoAttack cross-check never trains)")
    return p


def attack_images(model, source, idx: torch.Tensor, preset: Preset, device, eps: float, version: str, seed: int,
                  progress: bool, what: str) -> torch.Tensor:
    """:func:`autoattack_correct` over the images ``idx`` of ``source``, in the preset's batches."""
    d, out = preset.data, []
    bar = progress_bar(None, progress, total=len(idx), desc=f"AutoAttack {what} ε={eps:g}", unit="img")
    for _, x, y in iterate(source, idx, d.image_size, d.batch_size, device, d.num_workers):
        out.append(autoattack_correct(model, x, y, eps, version, seed))
        bar.update(len(y))
    bar.close()
    return torch.cat(out)


def autoattack_check(preset: Preset | str, results_dir, device: torch.device | str, n: int | None = None,
                     version: str = "standard", progress: bool = True, seed: int = SEED) -> pd.DataFrame:
    """AutoAttack on every model of ``preset`` with stored L∞ cells, on the cells' evaluation images
    (the first ``n`` of them, or all), at each of their ε: one row per stored attacked cell (see the
    module's docstring), in the preset's order of trainings and attacks."""
    if isinstance(preset, str):

        preset = load_preset(preset)
    device = torch.device(device)
    check(version in VERSIONS, f"AutoAttack version must be one of {', '.join(VERSIONS)}, got {version!r}")
    check(n is None or (is_int(n) and n >= 1), f"n must be a positive number of images, got {n!r}")
    ta = load_torchattacks()  # everything checked before any work
    results = Path(results_dir)
    cells = stored_cells(preset, results)
    check_writable_dir(results / CACHE, "the AutoAttack cache")
    trainings = [t for t in preset.trainings or [preset.model.train.training] if (cells["training"] == t).any()]
    presets = {t: require_model(preset, t, results) for t in trainings}
    d, store = preset.data, ResultStore(results, read_only=True)
    source = load_split(d.dataset, d.root, d.eval_split, d.image_size, verify=d.verify)
    rows = []
    for training, p in presets.items():
        loaded = ensure_model(p, ResultStore(results, plan_only=True), device, progress=False)  # plan-only: never trains
        mine = cells[cells["training"] == training]
        ours = mine[mine["model_id"] == loaded.model_id]
        if ours.empty:
            console.print(f"[yellow]{training}: the {len(mine)} stored cells were computed with another model than the "
                          f"cached one ({loaded.model_id}); skipped[/]")
            continue
        preds = {rid: store.load_predictions(rid) for rid in ours["run_id"]}
        first = next(iter(preds.values()))
        check(all(q["index"].tolist() == first["index"].tolist() for q in preds.values()),
              f"{training}: the stored cells were evaluated on different images")
        idx = torch.tensor(first["index"].to_numpy()[:n], dtype=torch.long)
        check(source.labels[idx].tolist() == first["label"].tolist()[:len(idx)],
              f"{training}: the stored labels differ from the dataset's ({d.dataset} {d.eval_split})")
        for eps in dict.fromkeys(ours["eps"]):
            key = {"model_id": loaded.model_id, "eps": eps, "norm": "Linf", "version": version, "seed": seed,
                   "batch_size": d.batch_size, "torchattacks": getattr(ta, "__version__", "?"),
                   "images": {"dataset": d.dataset, "split": d.eval_split, "image_size": d.image_size,
                              "indices": stable_hash(idx.tolist())}}
            robust, meta = cached_autoattack(results, key, idx, lambda: attack_images(
                loaded.model, source, idx, preset, device, eps, version, seed, progress, training))
            for cell in ours[ours["eps"] == eps].itertuples():
                q = preds[cell.run_id].iloc[:len(idx)]
                rows.append({"preset": preset.name, "training": training, "attack": cell.attack_label, "eps": eps,
                             **compare(torch.tensor((q["pred"] == q["label"]).to_numpy()), robust),
                             "n_cell": int(cell.n), "version": version, "seed": seed,
                             "autoattack_seconds": meta["seconds"], "model_id": loaded.model_id, "run_id": cell.run_id})
    return pd.DataFrame(rows)


def render_autoattack(df: pd.DataFrame, fmt: str = "markdown") -> str | None:
    """The cross-check as a table (markdown text, or printed with rich -> None): reported and
    AutoAttack robust accuracy (%) with their intervals, the gap; † marks a row where the indicator
    fires, and the legend names it."""

    ind = INDICATORS["autoattack_gap"]
    legend = f"† {ind.column}: {ind.explains}; fires where {ind.threshold}. Run instead: {ind.run_instead}."
    if df.empty:
        return render(pd.DataFrame(), "AutoAttack cross-check: no cells", fmt, [legend])
    pct = lambda a, lo, hi: f"{100 * a:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"  # noqa: E731
    table = pd.DataFrame({
        "Training": df["training"], "Attack": df["attack"], "ε": [f"{e:g}" for e in df["eps"]],
        "reported": [pct(r.reported_acc, r.reported_low, r.reported_high) + (" †" if r[AUDIT_AUTOATTACK_GAP] else "")
                     for _, r in df.iterrows()],
        "AutoAttack": [pct(a, lo, hi) for a, lo, hi in zip(df["autoattack_acc"], df["autoattack_low"], df["autoattack_high"])],
        "gap (pp)": [f"{100 * g:+.1f}" for g in df["gap"]],
    })
    r = df.iloc[0]
    images = f"all {r.n} evaluation images" if r.n == r.n_cell else f"the first {r.n} of the cells' {r.n_cell} evaluation images"
    caption = (f"AutoAttack cross-check of {r.preset}: robust accuracy (%) [95 % Wilson] on {images}; torchattacks "
               f"AutoAttack L∞, version {r.version}, seed {r.seed}; {int(df[AUDIT_AUTOATTACK_GAP].sum())} of {len(df)} cells flagged")
    return render(table, caption, fmt, [legend])


def default_out(preset: Preset, results: Path) -> Path:
    """``RESULTS/<scale>/<paper>-autoattack.md`` for a paper's only preset of a scale (the demo's),
    ``RESULTS/<scale>/<preset>-autoattack.md`` for one of several, ``RESULTS/<preset>-autoattack.md`` otherwise."""

    try:
        scales = get_paper(preset.paper).presets
    except PatchbenchError:
        scales = {}
    for scale, names in scales.items():
        if preset.name in names:
            return Path(results) / scale / f"{preset.paper if len(names) == 1 else preset.name}-autoattack.md"
    return Path(results) / f"{preset.name}-autoattack.md"


def main(argv: list[str] | None = None) -> int:
    """``python -m patchbench.runner.autoattack``: the cross-check of one preset, printed and written as markdown."""

    ap = argparse.ArgumentParser(prog="python -m patchbench.runner.autoattack", description=main.__doc__)
    ap.add_argument("--preset", required=True, help="preset name or YAML path (its cells must be stored)")
    ap.add_argument("--results", default="results", help="results directory (default: results)")
    ap.add_argument("--n", type=int, default=None, help="only the first N evaluation images (default: all)")
    ap.add_argument("--version", default="standard", choices=VERSIONS, help="torchattacks' AutoAttack version")
    ap.add_argument("--device", default=None, help="default: the preset's")
    ap.add_argument("--out", default=None, help="markdown file (default: RESULTS/<scale>/<paper>-autoattack.md)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:

        preset = load_preset(args.preset)
        device = resolve_device(args.device or preset.device)
        out = Path(args.out) if args.out else default_out(preset, Path(args.results))
        check_writable_dir(out.parent, "--out")
        t0 = time.perf_counter()
        df = autoattack_check(preset, args.results, device, args.n, args.version, not args.no_progress)
    except PatchbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    render_autoattack(df, "rich")
    atomic_write(out, render_autoattack(df, "markdown"))
    console.print(f"AutoAttack cross-check: {time.perf_counter() - t0:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
