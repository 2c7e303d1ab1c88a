"""The registration check of a defense's declared gradient: a class that declares ``gradient =
"exact"`` must give, through :meth:`~patchbench.defenses.base.Defense.differentiable`, the
derivative its own forward pass has — checked once, on a small probe, before any run.

Why: an adaptive attack follows the declared gradient, and the attack-failure audit then takes its
failure for robustness. Athalye et al. 2018 ("Obfuscated Gradients Give a False Sense of
Security", ICML; Sec. 4) name the false gradients: *shattered* ones (a non-differentiable or
numerically unstable step — a quantiser's autograd is 0 almost everywhere, while the output jumps
under any attack-sized step), and *vanishing* ones. Pintor et al. 2022's first indicator
(``unavailable_gradients``; reference code ``src/indicators/indicators.py`` lines 32-76: the
gradient raises, or some sample's gradient has L0 norm 0) catches a zero gradient during an audit,
on the cells of a run that has already happened; this check catches the declaration itself.

The probe (ours; every constant below): one image of :data:`PROBE_SIZE` px, 3 channels, uniform in
[0.1, 0.9] from a fixed generator; a random weighting w of the output, so the loss L(x) = ⟨w, T(x)⟩
needs no classifier (a defense that needs one gets :class:`StandIn`, a conv net of 2,000 parameters
with a normalization mean and std); λ = :data:`PROBE_LAMBDA` for a defense with a smoothing factor.
For :data:`DIRECTIONS` random ±1 directions d_k, the declared directional derivatives
a_k = ∂L/∂x · d_k (autograd through ``differentiable``) are compared with central differences of the
forward pass ``T(x) = apply(x, maps(x), λ)``:

* b_k at h = :data:`H_SMALL` (a derivative's scale), c_k at h = :data:`H_ATTACK` (4/255, an attack
  step's scale);
* refused as **zero or shattered** where ‖a‖ ≤ :data:`ZERO_RATIO` · ‖c‖ and ‖c‖ > :data:`MOVES`: the
  declared gradient is (near) zero while an attack-sized step moves the output;
* refused as **wrong** where the output moves at h_small (‖b‖ > MOVES) and a and b disagree: cosine
  < :data:`MIN_COSINE` or ‖a‖/‖b‖ outside [1/:data:`MAX_RATIO`, MAX_RATIO]; or where the output does
  not move at all but the declared gradient does;
* refused where the declared gradient cannot be computed (the backward pass raises, has no graph to
  x, or is not finite) while the forward pass runs.

Each forward evaluation runs on its own under the same seed of torch's generator (saved and
restored around the check), so a randomised defense is compared on one draw of its randomness
(EOT averages exactly those per-draw gradients). ``bpda`` and ``partial`` gradients are
approximations by declaration and are not compared. A class that cannot be built with its default
parameters, or whose forward pass does not run on the probe (it needs a real classifier, one
channel, larger images), is not probed at registration; :func:`patchbench.defenses.build_defense`
probes it on its first build instead (with the real parameters; the stand-in classifier still).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchbench.errors import PatchbenchError

PROBE_SIZE = 48  # px: large enough for the shipped defenses' default windows (PatchCleanser's 32 px patch)
PROBE_LAMBDA = 1.0  # the smoothing factor a λ defense is probed at
DIRECTIONS = 4  # random ±1 directions
H_SMALL = 1e-3  # central-difference step for the derivative
H_ATTACK = 4 / 255  # central-difference step at an attack step's scale
MOVES = 1e-4  # ‖directional differences‖ below this: the output does not move
ZERO_RATIO = 1e-3  # ‖declared‖ ≤ this · ‖attack-scale difference‖: the declared gradient is zero
MIN_COSINE = 0.9  # declared vs finite-difference directional derivatives
MAX_RATIO = 2.0  # their norms within a factor of 2
SEED = 20240  # the probe's own generator, and the seed each forward evaluation runs under


class StandIn(nn.Module):
    """The classifier a defense that needs one (saliency, masking with a normalization mean) gets on
    the probe: conv 3→4 + linear, fixed weights, ``mean``/``std`` like patchbench's model wrapper."""

    def __init__(self, gen: torch.Generator):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        self.register_buffer("mean", torch.full((3,), 0.5))
        self.register_buffer("std", torch.full((3,), 0.25))
        self.requires_grad_(False).eval()

    def forward(self, x):
        z = F.relu(self.conv((x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)))
        return self.fc(F.adaptive_avg_pool2d(z, 2).flatten(1))


def probe_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, StandIn]:
    """(x 1×3×S×S, weights w of the output, directions D×3×S×S, stand-in classifier), all seeded."""
    gen = torch.Generator().manual_seed(SEED)
    x = 0.1 + 0.8 * torch.rand(1, 3, PROBE_SIZE, PROBE_SIZE, generator=gen)
    w = torch.randn(1, 3, PROBE_SIZE, PROBE_SIZE, generator=gen)
    d = torch.randint(0, 2, (DIRECTIONS, 3, PROBE_SIZE, PROBE_SIZE), generator=gen).float() * 2 - 1
    return x, w, d, StandIn(gen)


def _under_seed(fn):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return fn()


def _norm(v: torch.Tensor) -> float:
    return float(v.double().norm())


def declared_vs_finite(defense, lam: float | None = None) -> dict[str, torch.Tensor] | None:
    """The probe's directional derivatives: ``declared`` (a), ``small`` (b) and ``attack`` (c),
    each (DIRECTIONS,) float64 — None where the forward pass does not run on the probe (see the
    module docstring). Raises :class:`PatchbenchError` where the declared gradient cannot be computed."""
    x, w, dirs, model = probe_inputs()
    lam = PROBE_LAMBDA if lam is None and defense.uses_lambda else lam

    def loss(z: torch.Tensor) -> float:
        out = _under_seed(lambda: defense.apply(z, defense.maps(z, model), lam))
        return float((out.double() * w.double()).sum())

    try:
        with torch.no_grad():
            loss(x)
    except PatchbenchError:
        raise
    except Exception:
        return None  # it needs what the probe does not have: probed at its first build instead
    xr = x.clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            out = _under_seed(lambda: defense.differentiable(xr, lam, model))
            total = (out * w).sum()
            grad = torch.autograd.grad(total, xr, allow_unused=True)[0] if total.requires_grad else None
    except PatchbenchError:
        raise
    except Exception as exc:
        raise PatchbenchError(f"its declared exact gradient cannot be computed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:80] if str(exc) else 'no message'})") from None
    if grad is None:
        raise PatchbenchError("its declared exact gradient has no graph to the input (detach, numpy or a codec "
                              "inside maps/apply)")
    if not bool(torch.isfinite(grad).all()):
        raise PatchbenchError("its declared exact gradient is not finite on the probe")
    with torch.no_grad():
        declared = (grad.double() * dirs.double()).flatten(1).sum(1)
        small = torch.tensor([(loss(x + H_SMALL * d) - loss(x - H_SMALL * d)) / (2 * H_SMALL) for d in dirs],
                             dtype=torch.float64)
        attack = torch.tensor([(loss((x + H_ATTACK * d).clamp(0, 1)) - loss((x - H_ATTACK * d).clamp(0, 1)))
                               / (2 * H_ATTACK) for d in dirs], dtype=torch.float64)
    return {"declared": declared, "small": small, "attack": attack}


def false_declaration(probe: dict[str, torch.Tensor]) -> str | None:
    """Why the declared gradient is false on ``probe`` (:func:`declared_vs_finite`), or None."""
    a, b, c = probe["declared"], probe["small"], probe["attack"]
    na, nb, nc = _norm(a), _norm(b), _norm(c)
    if nc > MOVES and na <= ZERO_RATIO * nc:
        return (f"its declared exact gradient is zero (|∂L/∂x·d| {na:.2g}) while a step of 4/255 moves the output "
                f"(finite difference {nc:.2g}): a zero or shattered gradient (Athalye et al. 2018)")
    if nb <= MOVES:
        if na > MOVES:
            return f"its declared exact gradient ({na:.2g}) moves where the output does not (finite difference {nb:.2g})"
        return None
    cosine = float((a * b).sum()) / max(na * nb, 1e-300)
    if cosine < MIN_COSINE or not (1 / MAX_RATIO <= na / nb <= MAX_RATIO):
        return (f"its declared exact gradient disagrees with the finite difference of its output (cosine {cosine:.2f}, "
                f"norm ratio {na / nb:.2g}; need ≥ {MIN_COSINE} and within {MAX_RATIO:g}×)")
    return None


def check_declared_gradient(cls, instance=None) -> bool:
    """Refuse (one-line :class:`PatchbenchError`) a defense class whose declared ``exact`` gradient
    is false on the probe. ``instance``: the defense to probe (default: built with its defaults).
    Returns whether it was probed (False: not exact, not buildable with defaults, or its forward
    pass does not run on the probe)."""
    if cls.gradient != "exact":
        return False
    if instance is None:
        try:
            instance = cls()
        except (PatchbenchError, TypeError):
            return False
    where = f"defense class {cls.__name__}"
    try:
        probe = declared_vs_finite(instance)
    except PatchbenchError as exc:
        raise PatchbenchError(f"{where} declares gradient = 'exact', but {exc}; declare 'bpda' (identity backward) "
                              "or 'partial'") from None
    if probe is None:
        return False
    why = false_declaration(probe)
    if why:
        raise PatchbenchError(f"{where} declares gradient = 'exact', but {why}; declare 'bpda' (identity backward) "
                              "or 'partial'")
    return True


_DEFERRED: set[type] = set()  # classes registered without a probe (see the module docstring)


def probe_at_registration(cls) -> None:
    """The registration check: probe ``cls`` with its defaults, or defer to its first build."""
    if not check_declared_gradient(cls) and cls.gradient == "exact":
        _DEFERRED.add(cls)


def probe_at_build(defense) -> None:
    """The first build of a class whose registration could not probe it: probe this instance."""
    cls = type(defense)
    if cls in _DEFERRED:
        check_declared_gradient(cls, defense)
        _DEFERRED.discard(cls)


def relative_error(probe: dict[str, torch.Tensor]) -> float:
    """‖a − b‖ / ‖b‖ of a probe (for reports and tests)."""
    return _norm(probe["declared"] - probe["small"]) / max(_norm(probe["small"]), 1e-300)

