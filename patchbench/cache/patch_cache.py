"""The one owner of stored patches: every patch a results directory keeps, behind one lookup by key.

Two kinds of entry live under ``<results>/artifacts/patches``, and only this module knows where:

* a **patch** (an attack's patch at one size, untargeted or towards a target class, trained once
  and reused): ``<name>.pt`` with its ``.png`` and ``.json`` beside it
  (:meth:`~patchbench.attacks.patch.Patch.save`; the ``.pt`` is written last, so its presence means
  the patch is whole);
* an **adaptive run** (LaVAN trained through a defense, :mod:`patchbench.sections.adaptive`): a
  folder ``adaptive/<name>/`` of one patch per recorded step (``step00025.pt/.png/.json``) and
  ``history.json``, written last (atomically) as the marker that the run is complete.

``<name>`` is :attr:`PatchKey.name`: a readable label (attack, size, target, placement) and the
hash of everything the pixels depend on, so a changed setting is a new entry and never a stale
one. The layout is the one patchbench has always written: results directories made before this
module existed are read as they are.

Whoever needs a patch asks by key (:meth:`PatchCache.load`, :meth:`PatchCache.load_run`); whoever
needs every stored patch (the audit matching cells to their training runs) reads
:meth:`PatchCache.entries`; ``export-patch --from`` finds one by name (:meth:`PatchCache.find`).
Nothing outside this module lists the folders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from patchbench.attacks.patch import Patch
from patchbench.config import cache_hash
from patchbench.errors import PatchbenchError
from patchbench.util import atomic_write

RUN_MARKER = "history.json"  # an adaptive run's record, written last


@dataclass(frozen=True)
class PatchKey:
    """The name of one stored entry: ``label`` (readable) and ``digest`` (the hash of the identity
    that makes its pixels); ``run``: an adaptive run (a folder of snapshots) rather than one patch."""

    label: str
    digest: str
    run: bool = False

    @classmethod
    def of(cls, label: str, identity: dict, run: bool = False) -> "PatchKey":
        return cls(label, cache_hash(identity, 12), run)

    @property
    def name(self) -> str:
        return f"{self.label}-{self.digest}"


class PatchCache:
    """The stored patches of the results directory ``results`` (module docstring)."""

    def __init__(self, results: str | Path):
        self.root = Path(results) / "artifacts" / "patches"

    def path(self, key: PatchKey) -> Path:
        """Where ``key`` is stored: a patch's ``.pt``, or an adaptive run's folder."""
        return self.root / "adaptive" / key.name if key.run else self.root / f"{key.name}.pt"

    # ---- patches ------------------------------------------------------------------------

    def load(self, key: PatchKey) -> Patch | None:
        """The stored patch of ``key``, or None when it is not (whole) there."""
        pt = self.path(key)
        return Patch.load(pt) if pt.is_file() else None

    def save(self, key: PatchKey, patch: Patch) -> Path:
        """Store ``patch`` under ``key``; returns its ``.pt``."""
        return patch.save(self.path(key).with_suffix(""))

    # ---- adaptive runs ------------------------------------------------------------------

    def load_run(self, key: PatchKey) -> tuple[list[Patch], list[dict]] | None:
        """(the snapshots in step order, the run's history) of a complete adaptive run, or None."""
        folder = self.path(key)
        marker = folder / RUN_MARKER
        if not marker.is_file():
            return None
        try:
            info = json.loads(marker.read_text())
            files = [_snapshot_stem(folder, s).with_suffix(".pt") for s in info["steps"]]
            history = info["history"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise PatchbenchError(f"adaptive run record {marker} is damaged; clear it with `rm -r '{folder}'` and rerun "
                                  "(the adaptive attack is trained again)") from None
        if not all(f.is_file() for f in files):
            return None
        return [Patch.load(f) for f in files], history

    def save_run(self, key: PatchKey, snapshots: list[Patch], history: list[dict], config: dict) -> Path:
        """Store an adaptive run: each snapshot (its ``meta["step"]`` names it), then the record
        that marks the run complete; returns the run's folder."""
        folder = self.path(key)
        for p in snapshots:
            p.save(_snapshot_stem(folder, p.meta["step"]))
        atomic_write(folder / RUN_MARKER, json.dumps(
            {"steps": [p.meta["step"] for p in snapshots], "history": history, "config": config},
            indent=2, default=str))
        return folder

    # ---- every entry --------------------------------------------------------------------

    def entries(self) -> list[tuple[Path, dict]]:
        """(the ``.pt``, its saved meta) of every whole stored patch, adaptive snapshots included,
        in path order; a patch without readable meta (or without a content id) is left out."""
        found = []
        for pt in self._files():
            try:
                meta = json.loads(pt.with_suffix(".json").read_text())
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("content_id"):
                found.append((pt, meta))
        return found

    def find(self, text: str) -> Path:
        """The one stored patch whose file name contains ``text`` (a whole name or its digest,
        ``lavan-8px-t0-top-right-27cabbc09547`` or ``27cabbc09547``)."""
        key = Path(text).name.removesuffix(".pt")
        found = sorted(self.root.rglob(f"*{key}*.pt")) if key and self.root.is_dir() else []
        if len(found) != 1:
            raise PatchbenchError(f"--from {text}: {'no' if not found else len(found)} cached patch artifact(s) match under "
                                  f"{self.root}" + ("" if not found else ": give more of the name"))
        return found[0]

    def _files(self) -> list[Path]:
        """Every ``.pt`` of the layout: the patches, then each adaptive run's snapshots."""
        if not self.root.is_dir():
            return []
        return sorted(self.root.rglob("*.pt"))


def _snapshot_stem(folder: Path, step: int) -> Path:
    return folder / f"step{int(step):05d}"
