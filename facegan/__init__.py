"""facegan: train, evaluate, share and serve face GANs (seed-faithful DCGAN by default)."""

__version__ = "0.1.0"
