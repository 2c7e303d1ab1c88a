"""Cache identity: which fields of a config dataclass name its cached artifacts.

Every field of a config dataclass is part of its identity unless the field declares otherwise in
its metadata (``key``): :func:`not_key` for a setting that cannot change the artifact (the
autocast dtype of evaluation), :func:`key_when` for a field that matters only in some
configurations (the LAT region when the training is LAT). :func:`key_fields` keeps the identity
fields whose value differs from the field's default, so adding a field *with a default* renames no
cached model, patch or cell. Two consequences:

- changing an existing key field's default would silently reuse artifacts made with the old
  default: bump :data:`CACHE_SCHEMA` with it (a test pins the defaults);
- bumping :data:`CACHE_SCHEMA` deliberately invalidates every cached model, patch and cell.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from patchbench.util import stable_hash

# part of every cache key and run id. 2: identity from declared key fields, defaults left out
CACHE_SCHEMA = 2


def not_key(**field_kw) -> Any:
    """A dataclass field that is not part of its config's identity (``field(**field_kw)``)."""
    return dataclasses.field(metadata={"key": False}, **field_kw)


def key_when(relevant: Callable[[Any], bool], **field_kw) -> Any:
    """A field that is part of the identity only where ``relevant(config)`` holds."""
    return dataclasses.field(metadata={"key": relevant}, **field_kw)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING  # a required field: always part of the identity


def _value_key(value: Any) -> Any:
    return key_fields(value) if dataclasses.is_dataclass(value) else value


def key_fields(cfg: Any) -> dict[str, Any]:
    """The identity of config dataclass ``cfg``: its key fields whose value is not the default
    (nested configs by their own identity)."""
    out = {}
    for f in dataclasses.fields(cfg):
        rule = f.metadata.get("key", True)
        if rule is False or (callable(rule) and not rule(cfg)):
            continue
        value, default = _value_key(getattr(cfg, f.name)), _default(f)
        if default is dataclasses.MISSING or value != _value_key(default):
            out[f.name] = value
    return out


def cache_hash(parts: dict[str, Any], n: int = 16) -> str:
    """The hash naming a cached artifact made from ``parts`` (identities and plain values)."""
    return stable_hash({"cache_schema": CACHE_SCHEMA, **parts}, n)


def config_hash(preset) -> str:
    """A preset's whole configuration, hashed (what a reader compares between two reports, and what an
    exported patch names as its preset): every field, not only the key fields."""
    return stable_hash(preset.to_dict())
