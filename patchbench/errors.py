"""The one exception type the CLI turns into a one-line message and exit code 2."""


class PatchbenchError(Exception):
    """Bad input from the user (names, files, values). The CLI prints ``error: <msg>`` and exits 2."""
