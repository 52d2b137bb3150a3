"""The metric registry: each kind of measure is one function, found by name.

As in stylegan2-ada-pytorch's metrics/metric_main.py, where a `register_metric` decorator files each
metric function in a dict by its name and `calc_metric` looks it up, a new metric joins here in one
place: a function decorated with `register_metric(kind, needs, *protocols)` (facegan.metrics.measures
holds the built-in ones). Unlike there, one function serves several named protocols (fid2k, fid10k,
fid50k are one Fréchet distance at three counts), and `needs` says which shared pass it draws on, so
`evaluate` can generate the faces once for every metric asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from facegan.metrics.protocols import PROTOCOLS, Protocol

if TYPE_CHECKING:
    from facegan.metrics.measurement import Measurement

Needs = Literal["inception", "pixels"]
Measure = Callable[["Measurement", Protocol], dict[str, float]]


@dataclass(frozen=True)
class Metric:
    """A kind of measure: what it draws on and the function that computes it for one protocol."""

    kind: str
    needs: Needs
    measure: Measure


METRICS: dict[str, Metric] = {}


def register_metric(kind: str, needs: Needs, *protocols: Protocol) -> Callable[[Measure], Measure]:
    """Decorator: file `fn` as the measure of `kind` and its named `protocols` (each of that kind) in
    PROTOCOLS, so `facegan evaluate --metrics NAME` and training's --eval-metrics accept them."""

    def add(fn: Measure) -> Measure:
        if kind in METRICS:
            raise ValueError(f"metric kind {kind!r} is registered twice")
        for p in protocols:
            if p.kind != kind or p.name in PROTOCOLS:
                raise ValueError(f"protocol {p.name!r} does not fit kind {kind!r} or is registered twice")
            PROTOCOLS[p.name] = p
        METRICS[kind] = Metric(kind, needs, fn)
        return fn

    return add
