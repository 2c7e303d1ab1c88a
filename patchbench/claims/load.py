"""A paper's claims as data: ``claims.yaml`` beside its plugin, read into :class:`~patchbench.claims.spec.Claim`
objects by :func:`load_claims`.

The file is a mapping with one key, ``claims``: a list of claims, each the fields of :class:`Claim` (``id``,
``statement``, ``source``, ``paper_numbers``, the sides ``a`` and ``b`` — ``label``, ``where``, ``metric`` — and
``presets``, ``direction``, ``margin``, ``pair_by``, ``explained``). A ``where`` value is a literal or a pick
written ``{pick: largest_size, args: [lavan]}`` (an argument may itself be a pick), looked up by name in
:data:`PICKS` — or in the ``picks`` a plugin passes for its own — and nowhere else.

A data file never runs code: it is read with YAML's safe loader (a ``!!python/...`` tag is refused), a pick is
only a name of that explicit map, and an unknown pick, an unknown key or a missing field stops the load with one
:class:`~patchbench.errors.PatchbenchError` naming the file, the claim and the key.
"""

from __future__ import annotations

import inspect
from os import PathLike
from pathlib import Path
from typing import Callable, Mapping

import yaml

from patchbench.claims.spec import (
    PAIR_BY, Cells, Claim, Pick, adaptive_lambda, adaptive_size, certified_size, largest_certified, largest_lambda,
    largest_size, last, longest_evasion, nearest_lambda, section_value, shortest_evasion, smallest_certified, smallest_size,
)
from patchbench.errors import PatchbenchError

PICKS: dict[str, Callable[..., Pick]] = {  # the picks a claims file may name: name -> the function that builds it
    f.__name__: f for f in (largest_size, smallest_size, largest_lambda, nearest_lambda, section_value, adaptive_lambda,
                            adaptive_size, longest_evasion, shortest_evasion, smallest_certified, largest_certified,
                            certified_size, last)
}
REQUIRED = ("id", "statement", "source", "paper_numbers", "a", "b", "presets")
OPTIONAL = ("direction", "margin", "pair_by", "explained")
SIDE = ("label", "where", "metric")
SCALAR = (str, int, float, bool, type(None))
# libyaml's safe loader where PyYAML was built with it: each shipped paper's file is read when its module is imported,
# by every command that reads the paper registry (25 ms a file with the pure-Python loader, 4 ms with libyaml)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(text: str):
    """The document, by libyaml's safe loader; a document it refuses goes to the pure-Python safe loader, which
    either reads it or refuses it naming what it refused (libyaml's scanner stops a ``!!python/...`` tag inside a
    flow mapping with a message that does not name the tag)."""
    try:
        return yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError:
        if SAFE_LOADER is yaml.SafeLoader:
            raise
        return yaml.safe_load(text)


class _Refused(Exception):
    """A problem at one key of one claim; :func:`load_claims` adds the file and the claim."""


def _keys(data, known: tuple, prefix: str, required: tuple = ()) -> dict:
    """``data`` as a mapping of ``known`` keys holding the ``required`` ones (``prefix``: where it sits, ``a.``)."""
    if not isinstance(data, dict):
        raise _Refused(f"{prefix.rstrip('.') or 'a claim'} must be a mapping, got {type(data).__name__}")
    unknown = [k for k in data if k not in known]
    if unknown:
        raise _Refused(f"unknown key {prefix}{unknown[0]} (known: {', '.join(known)})")
    missing = [k for k in required if k not in data]
    if missing:
        raise _Refused(f"missing key {prefix}{missing[0]}")
    return data


def _pick(data: dict, key: str, picks: Mapping[str, Callable[..., Pick]]) -> Pick:
    _keys(data, ("pick", "args"), f"{key}.", ("pick",))
    name, args = data["pick"], data.get("args", [])
    if not isinstance(name, str) or name not in picks:
        raise _Refused(f"{key}: unknown pick {name!r} (known: {', '.join(sorted(picks))})")
    if not isinstance(args, list):
        raise _Refused(f"{key}: args of pick {name!r} must be a list, got {type(args).__name__}")
    values = [_value(a, f"{key}.args[{i}]", picks) for i, a in enumerate(args)]
    factory = picks[name]
    try:
        inspect.signature(factory).bind(*values)
    except TypeError:
        params = ", ".join(inspect.signature(factory).parameters)
        raise _Refused(f"{key}: pick {name!r} takes ({params}), got {len(values)} argument(s)") from None
    try:
        pick = factory(*values)
    except (TypeError, ValueError, PatchbenchError) as exc:  # an argument of the wrong kind (a text where a number goes)
        raise _Refused(f"{key}: pick {name!r} cannot take {values!r} ({exc})") from None
    if not isinstance(pick, Pick):
        raise _Refused(f"{key}: {name!r} does not build a Pick, got {type(pick).__name__}")
    return pick


def _value(data, key: str, picks):
    """A literal, or a pick (a mapping with ``pick``)."""
    if isinstance(data, dict):
        return _pick(data, key, picks)
    if not isinstance(data, SCALAR):
        raise _Refused(f"{key}: a value is a text, a number, true/false, null or {{pick: ..., args: [...]}}, "
                       f"got {type(data).__name__}")
    return data


def _side(data, name: str, picks) -> Cells:
    _keys(data, SIDE, f"{name}.", ("label",))
    where = data.get("where", {})
    if not isinstance(where, dict):
        raise _Refused(f"{name}.where must be a mapping of result column -> value, got {type(where).__name__}")
    if not isinstance(data["label"], str):
        raise _Refused(f"{name}.label must be a text, got {data['label']!r}")
    bad = [c for c in where if not isinstance(c, str)]
    if bad:
        raise _Refused(f"{name}.where: a column is a name, got {bad[0]!r}")
    where = {column: _value(v, f"{name}.where.{column}", picks) for column, v in where.items()}
    return Cells(data["label"], where, data.get("metric", "correct"))


def _claim(data, picks) -> Claim:
    _keys(data, REQUIRED + OPTIONAL, "", REQUIRED)
    pair_by = data.get("pair_by", list(PAIR_BY))
    if not (isinstance(pair_by, list) and all(isinstance(c, str) for c in pair_by)):
        raise _Refused(f"pair_by must be a list of column names, got {pair_by!r}")
    return Claim(data["id"], data["statement"], data["source"], data["paper_numbers"], _side(data["a"], "a", picks),
                 _side(data["b"], "b", picks), data["presets"], direction=data.get("direction", "greater"),
                 margin=data.get("margin", 0.0), pair_by=tuple(pair_by), explained=data.get("explained", {}))


def load_claims(source: str | PathLike | object, picks: Mapping[str, Callable[..., Pick]] | None = None) -> tuple[Claim, ...]:
    """The claims of a claims file (a path, or a resource with ``read_text()``, e.g.
    ``importlib.resources.files(__name__) / "claims.yaml"``). ``picks``: the plugin's own pick functions
    (name -> a function building a :class:`Pick`), added to :data:`PICKS` for this file."""
    name = str(source)
    resource = source if hasattr(source, "read_text") else Path(source)
    try:
        data = _parse(resource.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PatchbenchError(f"{name}: cannot read the claims file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:  # a !!python/... tag ends here too: a safe loader constructs no object
        raise PatchbenchError(f"{name}: not a valid claims file ({' '.join(str(exc).split())})") from None
    known = {**PICKS, **(picks or {})}
    if not (isinstance(data, dict) and list(data) == ["claims"]):
        got = f"the keys {sorted(map(str, data))}" if isinstance(data, dict) else type(data).__name__
        raise PatchbenchError(f"{name}: a claims file is a mapping with one key, claims; got {got}")
    if not isinstance(data["claims"], list):
        raise PatchbenchError(f"{name}: claims must be a list of claims, got {type(data['claims']).__name__}")
    entries = data["claims"]
    claims, seen = [], set()
    for i, entry in enumerate(entries):
        cid = entry.get("id") if isinstance(entry, dict) else None
        label = f"claim {cid!r}" if cid is not None else f"claim {i + 1} (no id)"
        try:
            claim = _claim(entry, known)
        except _Refused as exc:
            raise PatchbenchError(f"{name}: {label}: {exc}") from None
        except PatchbenchError as exc:  # Claim's own checks (direction, margin, presets, explained, ...)
            raise PatchbenchError(f"{name}: {exc}") from None
        if claim.id in seen:
            raise PatchbenchError(f"{name}: {label}: the id is taken by an earlier claim")
        seen.add(claim.id)
        claims.append(claim)
    return tuple(claims)
