"""The networks and their weights: the DCGAN and R3GAN architectures (factory picks one), the EMA
generator, and checkpoints and exported generators on disk (checkpoint, ckpt_fields)."""
