"""Training a GAN: the run built from its config (build), one step (step, losses), one trainer per rank
(trainer: the loop, its checkpoints and divergence guard; schedule, agreement, rngs, stopping), rank 0's
outputs and the run's set-up (loop), resuming, torchrun ranks (distributed) and the dry run (plan)."""
