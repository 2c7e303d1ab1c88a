"""Strings a user types, parsed: λ ranges, ``--param key=value``, ``--set section.field=value``
overrides of a preset's raw YAML, and dataclasses built from raw mappings with one-line errors.
Nothing here knows a registry."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import yaml

from patchbench.errors import PatchbenchError, check_limit


def parse_lambdas(text: str | list | float | int) -> list[float]:
    """``start:stop[:step]`` (inclusive, default step 0.4) or a comma list, e.g.

    ``1.5:3.5`` -> 1.5, 1.9, 2.3, 2.7, 3.1, 3.5; ``2.3,2.7,3.5`` -> those three. λ must be >= 0.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        values = [float(text)]
    elif isinstance(text, list):
        values = []
        for item in text:
            values.extend(parse_lambdas(item))
    else:
        s = str(text).strip()
        if not s:
            raise PatchbenchError("empty λ list")
        if ":" in s:
            parts = s.split(":")
            if len(parts) not in (2, 3):
                raise PatchbenchError(f"malformed λ range {s!r}: expected start:stop[:step]")
            try:
                nums = [float(p) for p in parts]
            except ValueError:
                raise PatchbenchError(f"malformed λ range {s!r}: start, stop and step must be numbers") from None
            start, stop = nums[0], nums[1]
            step = nums[2] if len(nums) == 3 else 0.4
            if not all(math.isfinite(v) for v in nums):
                raise PatchbenchError(f"malformed λ range {s!r}: values must be finite")
            if step <= 0:
                raise PatchbenchError(f"malformed λ range {s!r}: step must be > 0")
            if stop < start:
                raise PatchbenchError(f"malformed λ range {s!r}: stop is below start")
            span = (stop - start) / step
            check_limit("lambdas", int(min(span, 1e18)) + 1, f"λ range {s!r}")  # before expanding it
            count = int(math.floor(span + 1e-9)) + 1
            values = [round(start + i * step, 6) for i in range(count)]
        else:
            check_limit("lambdas", s.count(",") + 1, "λ list")
            try:
                values = [float(p) for p in s.split(",") if p.strip()]
            except ValueError:
                raise PatchbenchError(f"malformed λ list {s!r}: expected numbers like 2.3,2.7") from None
    if not values:  # "," or " , ": a sweep with no λ at all is a typo, not a request
        raise PatchbenchError(f"empty λ list {text!r}")
    for v in values:
        if not math.isfinite(v) or v < 0:
            raise PatchbenchError(f"λ must be a finite number >= 0, got {v}")
    return list(dict.fromkeys(values))  # keep order, drop duplicates (in linear time: 10 000 λ are allowed)


def parse_lambda(text: str) -> float:
    """Exactly one λ (``--lam``)."""
    lams = parse_lambdas(text)
    if len(lams) != 1:
        raise PatchbenchError(f"--lam takes one value, got {text!r} (use sweep --lambdas for ranges)")
    return lams[0]


def option_overrides(sets: list[str] | None, device: str | None = None, data_root: str | None = None,
                     weights: str | None = None, amp: str | None = None) -> list[str]:
    """``--set`` items plus the overrides the common CLI options stand for."""
    given = {"device": device, "data.root": data_root, "model.weights": weights, "model.amp": amp}
    return list(sets or []) + [f"{k}={v}" for k, v in given.items() if v]


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``--param key=value`` pairs -> dict, each value parsed as YAML (``window=15``, ``space=pixel``)."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PatchbenchError(f"--param expects key=value, got {item!r}")
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise PatchbenchError(f"--param {key.strip()}: cannot parse value {value!r}") from None
    return params


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """``section.field=value`` overrides; value parsed as YAML (``attacks.0.steps=5`` indexes lists)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise PatchbenchError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise PatchbenchError(f"--set {key.strip()}: cannot parse value {text!r}") from None
        parts = key.strip().split(".")
        node: Any = raw
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                try:
                    idx = int(part)
                    node[idx]
                except (ValueError, IndexError):
                    raise PatchbenchError(f"--set {key}: {part!r} is not an index of that list") from None
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise PatchbenchError(f"--set {key}: {parts[i - 1]!r} is not a section")
    return raw


def build_dataclass(cls, raw: Any, where: str):
    """``cls(**raw)`` with one-line errors for a non-mapping or an unknown key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PatchbenchError(f"{where} must be a mapping")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise PatchbenchError(f"unknown key {where}.{unknown[0]} (allowed: {', '.join(sorted(names))})")
    return cls(**raw)
