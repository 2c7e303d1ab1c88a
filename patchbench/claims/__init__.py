"""Do the papers' results reproduce? Each paper's headline claims, declared as data by its plugin
(``Paper.claims``, a tuple of :class:`~patchbench.claims.spec.Claim`), checked on the stored cells with paired
tests and a verdict per claim and scale: *holds*, *contradicted*, *inconclusive*, *not computed* or
*unreliable* (``patchbench claims``; the first table of ``patchbench report``).

=====================  ===========================================================================
module                 job
=====================  ===========================================================================
:mod:`.spec`           Claim, Cells (one side: filters on result columns, a per-image metric) and the
                       pickers that read a filter value from the preset ("its largest LaVAN size")
:mod:`.load`           a paper's claims.yaml -> its Claims (safe YAML; picks by name from a whitelist)
:mod:`.stats`          the paired tests: exact McNemar, the paired bootstrap over images and
                       replicates (patch seeds, regions) with the effect's interval, Holm
:mod:`.rules`          the verdict rules, Holm across a paper's claims, the audit's indicators
:mod:`.pairs`          stored cells -> each side's cells -> pairs -> per-image outcomes
:mod:`.render`         the verdict table: rich, markdown, JSON
=====================  ===========================================================================

Only :mod:`.spec` and :mod:`.load` are imported here (the public api re-exports them for plugins). Checking every paper's claims
at a scale from a results directory stands above the paper registry, in
:mod:`patchbench.reporting.claim_checks` (imported by the CLI and the report only).
"""

from patchbench.claims.spec import (  # noqa: F401
    METRICS, Cells, Claim, Pick, adaptive_lambda, adaptive_size, certified_size, largest_certified, largest_lambda,
    largest_size, last, longest_evasion, nearest_lambda, section_value, shortest_evasion, smallest_certified,
    smallest_size,
)
from patchbench.claims.load import PICKS, load_claims  # noqa: F401
