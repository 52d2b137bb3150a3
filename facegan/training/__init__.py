"""Training a GAN: the run built from its config (build), one step (step, losses), the loop with its
checkpoints, evaluation and guard, resuming, torchrun ranks (distributed) and the dry run (plan)."""
