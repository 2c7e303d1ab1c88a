"""Reporting, above the paper plugins: a paper's table or figure by name from stored cells
(:mod:`.lookup`, with older defense parameters left out by :mod:`.superseded`), the leaderboard
(:mod:`.leaderboard`) and the report of every paper (:mod:`.report`: gathered by :mod:`.collect` with
:mod:`.provenance`, written by :mod:`.html` and :mod:`.markdown`). A table's contract and its helpers are
:mod:`patchbench.table`, below the plugins."""
