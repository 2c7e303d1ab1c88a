"""Plugins from outside the package: a paper, defenses and attacks in a folder of their own.

A plugin is an importable module (usually a package folder) named in the environment variable
``PATCHBENCH_PLUGINS`` (a comma list of module names, the folder above it on ``PYTHONPATH``) or
in the ``patchbench.plugins`` entry-point group of an installed distribution. It imports only
:mod:`patchbench.api` and declares, at module level, any of:

* ``PAPER``: a :class:`~patchbench.paper.Paper` (joins :data:`patchbench.papers.PAPERS`);
* ``DEFENSES``: a list of :class:`~patchbench.defenses.base.Defense` classes;
* ``ATTACKS``: a list of :class:`~patchbench.attacks.base.Attack` classes.

:func:`load_plugins` runs once, when :mod:`patchbench.papers` builds the paper registry; the CLI
builds it before any command when :func:`plugin_names` is not empty, so every command knows the
plugins' names, and imports the plugins first (:func:`import_plugins`: :mod:`patchbench.api` imports a
name's module on first use, so a plugin that does not import stops the command within a second, before
the registry loads torch). A plugin that fails to import, declares nothing or takes a name already
registered stops the command with one ``error:`` line naming the plugin.
"""

from __future__ import annotations

import functools
import importlib
import os
from importlib.metadata import entry_points
from types import ModuleType
from typing import TYPE_CHECKING

from patchbench.errors import PatchbenchError
from patchbench.paper import Paper

if TYPE_CHECKING:
    from patchbench.registry import Registry

ENV = "PATCHBENCH_PLUGINS"
GROUP = "patchbench.plugins"


def plugin_names() -> list[str]:
    """The plugin modules to load: ``$PATCHBENCH_PLUGINS`` first, then the entry points, each once."""
    names = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    return list(dict.fromkeys([*names, *_entry_point_modules()]))


@functools.cache
def _entry_point_modules() -> tuple[str, ...]:
    """The modules the installed distributions name in the entry-point group, read once per process:
    ``entry_points`` reads every installed distribution's metadata (6 ms, and every command asks)."""
    return tuple(ep.value.split(":")[0].strip() for ep in entry_points(group=GROUP))


def import_plugins() -> list[ModuleType]:
    """Every named plugin module, imported (registering nothing: :func:`load_plugins` does, when the paper registry is
    built). The CLI calls it first, so that a plugin that does not import is one error line within a second."""
    return [_import(name) for name in plugin_names()]


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except PatchbenchError as exc:
        raise PatchbenchError(f"plugin {name}: {exc}") from None
    except Exception as exc:  # a plugin's own bug or a missing module: one line naming it
        raise PatchbenchError(f"plugin {name} failed to import: {type(exc).__name__}: {exc} "
                              f"(${ENV} or the {GROUP} entry points name it)") from None


def _classes(module: ModuleType, name: str, key: str, base: type) -> list[type]:
    found = getattr(module, key, [])
    if not isinstance(found, (list, tuple)) or not all(isinstance(c, type) and issubclass(c, base) for c in found):
        raise PatchbenchError(f"plugin {name}: {key} must be a list of {base.__name__} subclasses")
    return list(found)


def load_plugin(name: str, papers: Registry) -> ModuleType:
    """Import plugin ``name`` and register what it declares (``PAPER`` into ``papers``)."""
    from patchbench.attacks import ATTACKS, Attack, register_attack  # reason: the CLI imports this module at start, before torch
    from patchbench.defenses import DEFENSES, Defense, register_defense  # reason: as above

    module = _import(name)
    paper = getattr(module, "PAPER", None)
    defenses = _classes(module, name, "DEFENSES", Defense)
    attacks = _classes(module, name, "ATTACKS", Attack)
    if paper is None and not defenses and not attacks:
        raise PatchbenchError(f"plugin {name} declares nothing: give it PAPER, DEFENSES or ATTACKS")
    if paper is not None and not isinstance(paper, Paper):
        raise PatchbenchError(f"plugin {name}: PAPER must be a patchbench.api.Paper, got {type(paper).__name__}")
    if paper is not None and paper.name in papers:  # before anything registers: a plugin registers all or nothing
        raise PatchbenchError(f"plugin {name}: paper name {paper.name!r} is already registered")
    added: list[tuple[dict, str]] = []
    try:
        for registry, register, classes in ((DEFENSES, register_defense, defenses), (ATTACKS, register_attack, attacks)):
            for cls in classes:
                register(cls)
                added.append((registry, cls.name))
    except PatchbenchError as exc:
        for registry, key in added:  # all or nothing: what this plugin registered before the refusal goes
            del registry[key]
        raise PatchbenchError(f"plugin {name}: {exc}") from None
    if paper is not None:
        papers.register(paper)
    return module


def load_plugins(papers: Registry) -> list[str]:
    """Every named plugin, in order, registered; returns their module names."""
    names = plugin_names()
    for name in names:
        load_plugin(name, papers)
    return names
