"""Probes: controlled measurements that decide why a paper's claim does not show at a scale
— each reads a preset's cached models (never trains) and prints numbers that
tell scale, budget and defect apart.

=========================  ===================================================================
module                     measures
=========================  ===================================================================
:mod:`.attention`          Grad-CAM maps clean vs under PGD per model (attention kept? maps
                           collapsed?) and the size of the attention terms in training
:mod:`.volume_order`       how often an N-pixel attack reorders a volumetric model's ranked
                           volume, and the model's accuracy with the clean image's order kept
:mod:`.mask_coverage`      the share of a patch's pixels a masking defense marks (and of the
                           rest of the image), per defense parameter
:mod:`.npixel_drop`        the undefended model's accuracy drop per N of an N-pixel attack
:mod:`.lgs_factor`         how much of a stored patch LGS's factor clip(1 − λ·g, 0, 1) keeps,
                           on the patch and on the rest of the image
=========================  ===================================================================

Each module runs as ``python -m patchbench.probes.<module> --preset P --results DIR``.
"""
