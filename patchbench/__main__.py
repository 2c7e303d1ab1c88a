"""``python -m patchbench`` (and ``torchrun -m patchbench``) runs the CLI."""

from patchbench.cli import main

main()
