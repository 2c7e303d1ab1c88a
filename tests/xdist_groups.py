"""``--dist loadgroup`` on every pytest: a test's ``xdist_group`` reaches the scheduler.

pytest-xdist's loadgroup hands the tests of one ``xdist_group`` to one worker by reading the group from
the test's id: its worker-side ``pytest_collection_modifyitems`` appends ``@group`` to ``item._nodeid``.
From pytest 9.2 a node's id is a structured ``item._id`` and ``_nodeid`` is read by nobody, so the
suffix is lost without an error and every test is scheduled on its own (pytest-dev/pytest-xdist#1386):
a session fixture shared by a group (a paper's demo run, a trained model) then runs once per worker.
:func:`pytest_collection_finish` runs just before the worker sends its ids to the scheduler and writes
the suffix where this pytest reads the id, if xdist's own write did not take. Imported by conftest.py
(a hook needs no registration there); kept free of torch so that tests/test_xdist_groups.py can start
two workers on it in seconds.
"""

from __future__ import annotations

import pytest


def group_of(item) -> str | None:
    """The group xdist gives ``item``: its ``xdist_group`` names, sorted and joined with ``_`` (as xdist does)."""
    names = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
    return "_".join(sorted(names)) or None


def name_group(item, group: str) -> None:
    """Append ``@group`` to ``item``'s id, in the field this pytest reads it from."""
    grouped = f"{item.nodeid}@{group}"
    if hasattr(item, "_id"):  # pytest >= 9.2: Node.nodeid is str(item._id), a NodeId
        item._id = type(item._id).parse(grouped)
    else:  # pytest < 9.2 (where xdist's own write takes and this is not reached)
        item._nodeid = grouped


@pytest.hookimpl(tryfirst=True)  # before xdist's worker sends the ids of the collected tests to the scheduler
def pytest_collection_finish(session):
    if not getattr(session.config.option, "loadgroup", False):  # set on xdist's workers under --dist loadgroup
        return
    for item in session.items:
        group = group_of(item)
        if group is not None and not item.nodeid.endswith(f"@{group}"):
            name_group(item, group)
