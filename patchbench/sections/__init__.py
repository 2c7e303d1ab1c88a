"""Preset sections a paper declares (``Paper.sections``, checked by its ``validate``, run by its
``extra_steps`` after the preset's sweep): the work a preset asks for beyond its grid, each as its
config dataclass, its check, its run and its table. ``optimality``: how strong each patch attack is
(the ``patch-optimality:`` section, AttackBench's optimality with the patch's area as the budget)."""
