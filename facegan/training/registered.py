"""The names a run config gives to registries — `--arch`, `--loss`, `--tracker` — checked against what
the registries hold, once, before a run writes anything (the config itself sits below the registries and
cannot see them). `REGISTRIES` is what `facegan train --help` lists for each flag."""

from __future__ import annotations

from collections.abc import Mapping

from facegan.config.schema import RunConfig
from facegan.networks.factory import ARCHITECTURES, get_architecture
from facegan.tracking.trackers import TRACKERS, tracker_kind
from facegan.training.losses import LOSSES, get_loss

# Each flag's config key and the registry its names come from (the live dicts: a later entry shows).
REGISTRIES: dict[str, Mapping[str, object]] = {
    "model.arch": ARCHITECTURES,
    "gan.loss": LOSSES,
    "train.tracker": TRACKERS,
}


def check_registered(cfg: RunConfig) -> None:
    """One FaceganError line naming the choices for an architecture, loss or tracker that no registry
    holds, or for options the architecture does not take."""
    get_architecture(cfg.model.arch).check(cfg.model, cfg.gan)
    get_loss(cfg.gan.loss)
    for name in cfg.train.trackers:
        tracker_kind(name)
