"""facegan: train, evaluate, share and serve face GANs (seed-faithful DCGAN by default)."""

from typing import TYPE_CHECKING

from facegan.version import __version__

if TYPE_CHECKING:  # what __getattr__ hands out, for type checkers (at run time the API loads on first use)
    from facegan.api import Generator, export, load, train

# The Python API (facegan/api.py), imported on first use so that `import facegan` stays cheap (no torch).
_API = ("load", "train", "export", "Generator")
__all__ = ["Generator", "__version__", "export", "load", "train"]


def __getattr__(name: str) -> object:
    if name in _API:
        from facegan import api

        return getattr(api, name)
    raise AttributeError(f"module 'facegan' has no attribute {name!r}")
