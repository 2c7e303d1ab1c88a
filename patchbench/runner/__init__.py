"""Running presets and papers, above the paper plugins: a preset's sweep, status and one-cell evaluation
(:mod:`.sweep`), a paper reproduced (:mod:`.reproduce`, after :mod:`.preflight`'s checks), a sweep on a
cluster (:mod:`.scaleout`), the AutoAttack cross-check of a preset (:mod:`.autoattack`) and the size
advice before training a patch (:mod:`.patch_area`). What the CLI's commands call."""
