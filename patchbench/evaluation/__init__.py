"""Evaluation: a preset's experiment (:mod:`.experiments`) runs its grids (:mod:`.grid`) of conditions ×
defenses (:mod:`.defense_params`: parameters and λ lists) × λ through the engine (:mod:`.engine`: one pass
over the evaluation images, maps once per batch and defense) into the store; :mod:`.stages` times the
steps, :mod:`.ssim` measures what a defense changed."""
