"""patchbench command line: the Typer app, its global options and the table of its commands, one module per family
(:mod:`.run`, :mod:`.show`, :mod:`.files`, :mod:`.catalog`); each command parses its
options (declared in :mod:`.options`), calls the layer that does the job and prints (named plugins load first). A user error is one line ``error: ...`` on stderr, exit code 2, nothing written."""

from __future__ import annotations

import functools
import sys
from typing import Annotated

import typer
from rich.console import Console

from patchbench import __version__, faults
from patchbench.cli import catalog, files, run, show
from patchbench.plugins import import_plugins, plugin_names

app = typer.Typer(
    help="Benchmark localized adversarial attacks (adversarial patches) and their defenses.\n\n"
         "Train a classifier and patches, sweep attack × defense × λ into parquet, rebuild the papers' tables.",
    add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich",
)
out = Console(soft_wrap=True)  # a result line is one line, however narrow the pipe: paths never wrap


def _version(value: bool) -> None:
    if value:
        out.print(f"patchbench {__version__}")
        raise typer.Exit()


# the app's own options: they go before the command (`patchbench --debug sweep ...`)
Version = Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")]
Deterministic = Annotated[bool, typer.Option("--deterministic", help="Bit-identical reruns on this machine: strict deterministic algorithms and one torch thread (slower on a multi-core CPU; see results/README.md). Goes before the command: patchbench --deterministic reproduce ...")]
Debug = Annotated[bool, typer.Option("--debug", help="On an error or a fault (disk full, Ctrl-C, ...), show the traceback before the one-line message. Goes before the command.")]
Compile = Annotated[bool, typer.Option("--compile", help="Fuse the iterative defenses' inner loops (TVM) with torch.compile: faster on long runs, equal up to float rounding; the first call per input shape compiles (3-11 s). Also PATCHBENCH_COMPILE=1. Goes before the command.")]


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context, version: Version = False, deterministic: Deterministic = False, compile_: Compile = False,
          debug: Debug = False):
    """Benchmark localized adversarial attacks (adversarial patches) and their defenses."""
    faults.debug = debug
    if compile_:
        from patchbench.defenses import compiling  # reason: deferred: `patchbench --help` imports no torch

        compiling.enable()
    if deterministic:
        from patchbench.devices import strict_determinism  # reason: deferred: `patchbench --help` imports no torch

        strict_determinism()
    if ctx.invoked_subcommand is None:  # `patchbench` alone: the help, exit 0
        out.print(ctx.get_help(), highlight=False)
        raise typer.Exit()


COMMANDS = {  # name -> function, in the order `patchbench --help` lists them
    "list": catalog.list_cmd, "train-model": run.train_model, "train-patch": run.train_patch, "defend": files.defend,
    "sweep": run.sweep, "status": run.status_cmd, "table": show.table, "reproduce": run.reproduce_cmd,
    "report": show.report_cmd, "plot": show.plot, "claims": show.claims_cmd, "audit": show.audit_cmd, "background-attack": files.background_attack_cmd,
    "leaderboard": show.leaderboard_cmd, "evaluate": run.evaluate_cmd, "export-patch": files.export_patch_cmd,
}
for _name, _command in COMMANDS.items():
    app.command(_name)(_command)


def main() -> None:
    """Console entry point: a user error or a fault (disk full, permission lost, Ctrl-C, SIGTERM) ends in one line
    on stderr, exit 2 (128 + the signal for an interrupt); ``--debug`` adds the traceback (:mod:`patchbench.faults`)."""
    sys.exit(faults.run(_command))


def _command():
    if plugin_names():  # plugins register when the paper registry is built: every command then knows them
        import_plugins()  # first: a plugin that fails to import stops the command before the registry loads torch (3 s)
        import patchbench.papers  # noqa: F401  # reason: the paper registry loads all papers (torch); only for named plugins
    return _click_command()(standalone_mode=False)


@functools.cache
def _click_command():
    """The click command Typer builds from ``app`` (it inspects every command's signature: ~25 ms), built once per
    process: a process that runs several commands (the tests, a notebook) pays it once. What ``app()`` does besides
    (a pretty-exception hook) is off here (``pretty_exceptions_enable=False``); :mod:`patchbench.faults` handles errors."""
    return typer.main.get_command(app)


if __name__ == "__main__":
    main()
