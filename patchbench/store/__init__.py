"""The results directory: every evaluated cell as one parquet row (:mod:`.results`, the
:class:`~patchbench.store.results.ResultStore`) under the columns its writers declare (:mod:`.columns`).
Below the caches and the evaluation, which both keep their files in it."""
