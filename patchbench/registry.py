"""One way to add anything: a :class:`Registry` maps names to entries (timm-style), takes each name
once, checks an entry before it joins, and names the known entries when a lookup misses.

Every registry of patchbench is one: attacks, defenses, models, datasets, training objectives,
volumization metrics, experiments and papers. A registry is a ``dict`` (``name in R``, ``R[name]``,
iteration in registration order), so reading one needs nothing new; adding goes through
:meth:`Registry.register`, which a plugin calls too.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from patchbench.errors import PatchbenchError


def _label(entry: Any) -> str:
    """A class's or function's own name; empty for plain records (a model spec, a paper)."""
    return getattr(entry, "__name__", "")


def _by(entry: Any) -> str:
    return f" ({_label(entry)})" if _label(entry) else ""


def own_name(cls: Any) -> Any:
    """The ``name`` a class sets itself (an inherited one does not count)."""
    return vars(cls).get("name") if isinstance(cls, type) else None


class Registry(dict):
    """``name -> entry`` for one ``kind`` of thing (``"defense"``, ``"attack"``, ...).

    ``check(entry)`` (optional) raises a one-line :class:`PatchbenchError` for an entry that breaks
    the kind's contract; ``name_of(entry)`` gives the name an entry registers under (default: its
    ``name`` attribute).
    """

    def __init__(self, kind: str, check: Callable[[Any], None] | None = None,
                 name_of: Callable[[Any], Any] = lambda entry: getattr(entry, "name", None)):
        super().__init__()
        self.kind, self._check, self._name_of = kind, check, name_of

    def register(self, entry: Any, name: str | None = None) -> Any:
        """Add ``entry`` under ``name`` (default: its own name) after the kind's check; a name already
        taken is refused. Returns ``entry``, so it also serves as a class decorator."""
        if self._check is not None:
            self._check(entry)
        name = self._name_of(entry) if name is None else name
        if not isinstance(name, str) or not name:
            label = _label(entry) or repr(entry)
            raise PatchbenchError(f"{self.kind} {label} has no name of its own (set its `name`)")
        if name in self:
            raise PatchbenchError(f"{self.kind} name {name!r} is already registered{_by(self[name])}; "
                                  f"{_label(entry) or 'this one'} needs another")
        self[name] = entry
        return entry

    def register_all(self, entries: Iterable[Any]) -> "Registry":
        for entry in entries:
            self.register(entry)
        return self

    def lookup(self, name: str) -> Any:
        """The entry named ``name``, or a one-line error listing the known names."""
        if name not in self:
            raise PatchbenchError(f"unknown {self.kind} {name!r}; known: {', '.join(self)}")
        return self[name]
