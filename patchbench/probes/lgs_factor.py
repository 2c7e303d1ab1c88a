"""How much of a patch does LGS remove? LGS multiplies each pixel by clip(1 − λ·g(x), 0, 1) (ICAART
Eq. 5), so a patch survives where its normalized local gradient g is small. For stored patches (a
plain LaVAN patch, or an adaptive LaVAN run's snapshots: ``<run>/stepNNNNN.pt``), each pasted at its
own placement on the preset's first ``n`` evaluation images, the probe reports:

* ``patch_factor``: the mean of clip(1 − λ·g, 0, 1) over the patch's pixels (1: LGS leaves the patch as
  it is; 0: LGS blacks it out);
* ``patch_zeroed``: the share of the patch's pixels with factor 0;
* ``rest_factor``: the same mean over the other pixels (what LGS does to the object).

No accuracy is read: it says whether an adaptive patch beats LGS by making its own gradients small
(the paper's Sec. 4.3 expects the white-box attack to "set the patch to zero" instead).

``python -m patchbench.probes.lgs_factor --preset P --results DIR --patch FILE.pt [--patch ...] [--n 200] [--lam 2.3]``
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from patchbench.attacks.patch import Patch
from patchbench.defenses import build_defense
from patchbench.devices import resolve_device
from patchbench.errors import check
from patchbench.presets import load_preset
from patchbench.probes import command


def lgs_factor(defense, x: torch.Tensor, patch: Patch, lam: float) -> dict:
    """The module docstring's three numbers for ``patch`` pasted on images ``x`` through ``defense``."""
    xp = patch.apply(x)
    ones = Patch(torch.ones_like(patch.pixels[:1]), patch.mask, patch.meta)
    region = (ones.apply(torch.zeros_like(x[:, :1])) > 0.5).expand_as(x)
    with torch.no_grad():
        factor = (1 - lam * defense.maps(xp)["g"]).clamp(0, 1).expand_as(x)
    return {"patch_factor": float(factor[region].mean()), "patch_zeroed": float((factor[region] == 0).float().mean()),
            "rest_factor": float(factor[~region].mean())}


def main(argv: list[str] | None = None) -> int:
    ap = command.parser("lgs_factor", __doc__, n=200, results=False, sets=False)
    ap.add_argument("--patch", action="append", required=True, help="a stored patch (.pt); repeat for several")
    ap.add_argument("--defense", default="lgs", help="an LGS-family defense of the preset (its parameters are used)")
    ap.add_argument("--lam", type=float, default=2.3)
    args = ap.parse_args(argv)

    def probe() -> pd.DataFrame:
        p = load_preset(args.preset)
        spec = [d for d in p.defenses if d.name == args.defense]
        check(len(spec) == 1, f"preset {p.name} has no defense {args.defense!r}")
        defense = build_defense(args.defense, {k: v for k, v in spec[0].params.items() if k != "lambdas"})
        source, idx = command.eval_images(p, args.n)
        x = source.batch(idx, p.data.image_size, resolve_device("cpu"))
        rows = []
        for f in args.patch:
            check(Path(f).is_file(), f"no patch file {f}")
            rows.append({"patch": Path(f).parent.name[:40] + "/" + Path(f).stem, **lgs_factor(defense, x, Patch.load(f), args.lam)})
        return pd.DataFrame(rows)

    return command.run(probe, digits=3)


if __name__ == "__main__":
    raise SystemExit(main())
