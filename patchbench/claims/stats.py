"""The paired tests behind a claim's verdict, on per-image outcomes of two sides: ``a`` and ``b`` are arrays of
shape (R, n) — R replicates (patch seeds, regions, patches; 1 for a single pair of cells) × the n images
both sides saw, paired by dataset index.

* **Effect**: the mean over replicates and images of a − b (a difference of accuracies for 0/1 outcomes, of
  mean losses for losses), with a 95 % **paired bootstrap** interval: each of ``N_BOOT`` resamples draws the
  images with replacement (one draw for all replicates, since every replicate saw the same images) and the
  replicates with replacement (crossed resampling, so the seed-to-seed spread is in the interval as well as
  the image sampling), seeded, so a rerun gives the same interval.
* **p-values** against the claim's boundary (0, or ∓margin): for 0/1 outcomes of one replicate and boundary
  0, the **exact McNemar test** — under H0 the n10 images that only ``a`` gets right and the n01 that only
  ``b`` gets right split as Bin(n10 + n01, ½) (McNemar 1947; scipy's ``binomtest``; two-sided p = twice the
  smaller tail, capped at 1, which is binomtest's two-sided p at ½). Otherwise (several replicates, a margin,
  losses) the **bootstrap** p-values: the share of resampled effects on the far side of the boundary
  ((1 + count) / (N_BOOT + 1)), i.e. the level at which the percentile interval touches the boundary
  (Efron & Tibshirani 1993, ch. 15-16); two-sided p = twice the smaller one, capped at 1.
* **Holm** (1979) step-down adjustment across a paper's claims: the i-th smallest of m p-values is
  multiplied by m − i + 1, then made non-decreasing, capped at 1.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

N_BOOT = 10_000
LEVEL = 0.95
CHUNK = 500  # resamples drawn at once (memory: CHUNK × n weights)


@dataclass(frozen=True)
class PairedResult:
    test: str  # "exact McNemar" or "paired bootstrap"
    n_images: int
    n_replicates: int
    mean_a: float
    mean_b: float
    effect: float  # mean of a − b
    low: float  # its 95 % paired-bootstrap interval
    high: float
    p_hold: float  # one-sided: H1 = the claim (effect beyond the boundary in the claimed direction)
    p_opposite: float  # one-sided: H1 = the effect beyond the boundary the other way
    p: float  # two-sided: min(1, 2 · min(p_hold, p_opposite))
    discordant: tuple[int, int] | None = None  # McNemar: (a right & b wrong, a wrong & b right)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float, float, float]:
    """Exact McNemar test of paired 0/1 outcomes. Returns (n10, n01, p two-sided, p for a > b, p for a < b),
    n10 = images ``a`` gets right and ``b`` wrong, n01 the reverse; no discordant pair: every p is 1."""
    from scipy.stats import binomtest  # reason: scipy.stats takes a second to import; only the exact McNemar test needs it

    a, b = np.asarray(a, bool).ravel(), np.asarray(b, bool).ravel()
    n10, n01 = int((a & ~b).sum()), int((~a & b).sum())
    if n10 + n01 == 0:
        return n10, n01, 1.0, 1.0, 1.0
    return (n10, n01, float(binomtest(n10, n10 + n01, 0.5).pvalue),
            float(binomtest(n10, n10 + n01, 0.5, alternative="greater").pvalue),
            float(binomtest(n10, n10 + n01, 0.5, alternative="less").pvalue))


def stable_seed(text: str) -> int:
    """A seed from a name (the claim's id): the same resamples on every run and in any claim order."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def bootstrap_effects(d: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``n_boot`` resampled means of ``d`` (R × n): images and replicates drawn with replacement, crossed
    (one image draw per resample, used by every replicate drawn)."""
    d = np.atleast_2d(np.asarray(d, float))
    r, n = d.shape
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for start in range(0, n_boot, CHUNK):
        k = min(CHUNK, n_boot - start)
        images = rng.integers(0, n, size=(k, n))
        w = np.bincount((images + n * np.arange(k)[:, None]).ravel(), minlength=k * n).reshape(k, n)  # image counts
        reps = rng.integers(0, r, size=(k, r))
        v = np.bincount((reps + r * np.arange(k)[:, None]).ravel(), minlength=k * r).reshape(k, r)  # replicate counts
        out[start:start + k] = np.einsum("kr,rk->k", v, d @ w.T) / (r * n)
    return out


def paired_test(a: np.ndarray, b: np.ndarray, binary: bool, direction: str, boundary: float, seed: int,
                n_boot: int = N_BOOT) -> PairedResult:
    """The claim's test on per-image outcomes ``a``, ``b`` (R × n, the same images in the same order in every
    row): exact McNemar for 0/1 outcomes of one replicate against boundary 0, else the paired bootstrap."""
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired outcomes need equal, non-empty shapes, got {a.shape} and {b.shape}")
    d = a - b
    boots = bootstrap_effects(d, n_boot, seed)
    low, high = (float(q) for q in np.quantile(boots, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]))
    p_le = (1 + int((boots <= boundary).sum())) / (n_boot + 1)  # share of resamples at or below the boundary
    p_ge = (1 + int((boots >= boundary).sum())) / (n_boot + 1)
    test, discordant = "paired bootstrap", None
    if binary and a.shape[0] == 1 and boundary == 0:
        n10, n01, _, p_gt, p_lt = mcnemar_exact(a[0] > 0.5, b[0] > 0.5)
        test, discordant, p_le, p_ge = "exact McNemar", (n10, n01), p_gt, p_lt  # H1 a > b rejects effect <= 0
    p_hold, p_opp = (p_le, p_ge) if direction == "greater" else (p_ge, p_le)
    return PairedResult(test, a.shape[1], a.shape[0], float(a.mean()), float(b.mean()), float(d.mean()), low, high,
                        p_hold, p_opp, min(1.0, 2 * min(p_hold, p_opp)), discordant)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given)."""
    p = np.asarray(pvalues, float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out
