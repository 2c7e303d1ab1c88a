"""The command line (Typer): the app and its table of commands (:mod:`.app`), the options declared once
(:mod:`.options`), one module per family of commands. ``patchbench.cli:main`` is the console script's entry
point (pyproject's [project.scripts]; installed scripts import it by that name)."""

from patchbench.cli.app import main  # noqa: F401
