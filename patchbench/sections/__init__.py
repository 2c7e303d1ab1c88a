"""Preset sections a paper declares (``Paper.sections``, checked by its ``validate``, run by its
``extra_steps`` after the preset's sweep): the work a preset asks for beyond its grid, each as its
config dataclass, its check, its run and its cells. :mod:`.adaptive`: the adaptive attack through each
defense (``adaptive:``); :mod:`.certified`: PatchCleanser's certified baseline (``certified:``);
:mod:`.optimality`: how strong each patch attack is (the ``patch-optimality:`` section, AttackBench's
optimality with the patch's area as the budget); :mod:`.audit`: the per-cell attack-failure audit of a
patch grid (``audit:``), run after every sweep."""
