"""HTTP caching of seeded images: a seed names one image of one model forever, so its URL may be cached
forever, provided the validator changes whenever the model does.

The ETag is `"<model version>-<request digest>"`. The model version hashes everything the pixels
depend on: the weights and buffers, the architecture config, the inference wrapper's settings (e.g.
bf16 autocast), the device type and the model's display truncation (what a URL without `truncation`
draws); so a retrained model served under the same name gets new ETags,
and every worker process of one server (each loads its own copy) gives the same ones.
"""

from __future__ import annotations

import hashlib

import torch

from facegan.version import __version__

# For URLs whose bytes never change: a CDN may keep them for a year without asking again.
IMMUTABLE = "public, max-age=31536000, immutable"


def model_version(g: torch.nn.Module) -> str:
    """16 hex digits that change whenever the generator's output could."""
    h = hashlib.sha256()
    h.update(repr(getattr(g, "cfg", None)).encode())
    h.update(f"{type(g).__qualname__}|{getattr(g, 'amp_dtype', None)}".encode())
    if (display := getattr(g, "display_truncation", None)) is not None:  # none: versions stay as they were
        h.update(f"|display {float(display)!r}".encode())
    for name, t in g.state_dict().items():
        t = t.detach()
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|{t.device.type}|".encode())
        # Bytes through uint8 so bf16 and friends hash too (numpy has no bfloat16).
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def etag(version: str, *parts: object) -> str:
    """A strong ETag for the image a route makes from `parts` (its name and canonical parameters);
    the package version is in it because encoders and filters may change between releases."""
    digest = hashlib.sha256("|".join(map(str, (__version__, *parts))).encode()).hexdigest()[:16]
    return f'"{version}-{digest}"'


def not_modified(if_none_match: str | None, tag: str) -> bool:
    """Whether an If-None-Match header matches `tag` (weak comparison, as RFC 9110 asks for it)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(c.strip().removeprefix("W/") == tag for c in if_none_match.split(","))
