"""patchbench: benchmark localized adversarial attacks (adversarial patches) and their defenses."""

__version__ = "0.1.0"

from patchbench.errors import PatchbenchError  # noqa: E402,F401
