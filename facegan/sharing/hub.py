"""The Hugging Face Hub layout: a folder with config.json, model.safetensors and a README.md model card.

`facegan export --format hub --out DIR` writes it through huggingface_hub's ModelHubMixin (which also
gives `push_to_hub` and `from_pretrained`), so `hf upload USER/NAME DIR` (huggingface_hub's CLI)
publishes it as is.
model.safetensors is an ordinary facegan export (weights + config in its metadata), so reading a Hub
folder back needs only safetensors: `facegan generate|serve --checkpoint DIR` and `facegan.load(DIR)`
work on the base install, while this module (and huggingface_hub) are needed to write one or to
download a repo id.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData, ModelHubMixin, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
from torch import nn

from facegan.config.schema import INFERENCE_AMP_DEFAULT
from facegan.errors import FaceganError
from facegan.networks.checkpoint import export_generator
from facegan.runtime.device import DEFAULT_DEVICE
from facegan.runtime.perf import model_config, unwrap_inference
from facegan.sampling.directions import Directions
from facegan.sampling.generate import load_generator
from facegan.sharing.names import HUB_PREFIX, is_hub_id, not_found
from facegan.storage.files import atomic_write
from facegan.version import __version__

HUB_WEIGHTS = "model.safetensors"
HUB_EDITS = "edits.safetensors"  # attribute edit directions (facegan.edits), when the model has them
HUB_CONFIG = "config.json"
HUB_CARD = "README.md"
HUB_SAMPLES = "samples.png"
TAGS = ["facegan", "gan", "image-generation", "unconditional-image-generation", "faces"]
METRIC_FAMILIES = ("fid", "kid", "swd", "c2st", "prdc")  # the card's `metrics`, from metrics.jsonl keys
CARD_TEMPLATE = "---\n{{ card_data }}\n---\n\n{{ body }}\n"
# The Hub metadata of the generators facegan ships (their cards are facegan/pretrained_models/*.md).
# The datasets are the Hub's copies of the sources they were trained on.
SHIPPED = {
    "celeba64": {
        "license": "other",
        "license_name": "celeba-non-commercial-research",
        "license_link": "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
        "datasets": ["huggan/CelebA-faces"],
        "metrics": ["swd", "c2st", "prdc"],
    },
    "anime64": {
        "license": "other",
        "license_name": "scraped-artwork-research-only",
        "datasets": ["huggan/anime-faces"],
        "metrics": ["swd", "c2st", "prdc"],
    },
}


class HubGenerator(
    ModelHubMixin, library_name="facegan", tags=TAGS, pipeline_tag="unconditional-image-generation"
):
    """A facegan generator as huggingface_hub sees it: save_pretrained / push_to_hub / from_pretrained.

    `card` holds the model card's metadata (license, license_name, license_link, datasets, metrics)
    and its markdown `body`; `samples` is an image copied next to it as samples.png."""

    def __init__(
        self,
        model: nn.Module,
        card: dict[str, Any] | None = None,
        samples: Path | None = None,
        half: bool = False,
    ) -> None:
        self.model = model
        self.card = card or {}
        self.samples = samples
        self.half = half  # float16 weights in model.safetensors

    def _save_pretrained(self, save_directory: Path) -> None:
        g = unwrap_inference(self.model)
        cfg = model_config(g)
        export_generator(
            g, cfg, save_directory / HUB_WEIGHTS, extra={"facegan_version": __version__}, half=self.half
        )
        config = {
            **asdict(cfg),
            "library_name": "facegan",
            "format": "facegan-generator",
            "facegan_version": __version__,
        }
        # The page's default variety for it, as in model.safetensors' metadata (which is what loads).
        if (display := getattr(g, "display_truncation", None)) is not None:
            config["display_truncation"] = display
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        atomic_write(save_directory / HUB_CONFIG, lambda tmp: tmp.write_text(text))
        edits: Directions | None = getattr(g, "edits", None)
        if edits is not None:  # attribute edits (facegan.edits) travel with it
            edits.save(save_directory / HUB_EDITS)
        if self.samples is not None:
            samples = self.samples
            atomic_write(save_directory / HUB_SAMPLES, lambda tmp: shutil.copyfile(samples, tmp))

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The card: the mixin's class metadata (library, tags, task) plus this export's own."""
        data = ModelCardData(**self._hub_mixin_info.model_card_data.to_dict())
        for key in ("license", "license_name", "license_link", "datasets", "metrics"):
            if self.card.get(key):
                setattr(data, key, self.card[key])
        data.license = data.license or "other"
        card: ModelCard = ModelCard.from_template(
            data, template_str=CARD_TEMPLATE, body=self.card.get("body", "")
        )
        return card

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        device: str = DEFAULT_DEVICE,
        amp: str = INFERENCE_AMP_DEFAULT,
        **kwargs: Any,
    ) -> HubGenerator:
        folder = Path(model_id)
        if folder.is_dir():
            weights = folder / HUB_WEIGHTS
            if not weights.is_file():
                raise FaceganError(
                    f"{model_id!r} has no {HUB_WEIGHTS}; it is not a facegan Hub folder "
                    f"(write one with facegan export --format hub)"
                )
        else:
            try:
                weights = Path(
                    hf_hub_download(
                        model_id,
                        HUB_WEIGHTS,
                        revision=revision,
                        cache_dir=cache_dir,
                        force_download=force_download,
                        token=token,
                        local_files_only=local_files_only,
                    )
                )
            except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as err:
                raise FaceganError(_fetch_failed(model_id, err)) from None
            # The edits file lands in the same snapshot folder, where load_generator finds it beside the
            # weights. A repo without one (or offline with none cached) simply has no edits.
            try:
                hf_hub_download(
                    model_id,
                    HUB_EDITS,
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    token=token,
                    local_files_only=local_files_only,
                )
            except (EntryNotFoundError, LocalEntryNotFoundError):
                pass
            except (HfHubHTTPError, OSError, ValueError) as err:
                raise FaceganError(_fetch_failed(model_id, err)) from None
        return cls(load_generator(weights, device, amp))


def from_pretrained(
    repo_or_dir: str | Path,
    *,
    device: str = DEFAULT_DEVICE,
    amp: str = INFERENCE_AMP_DEFAULT,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> nn.Module:
    """A generator (eval mode) from a Hub repo named "hf:owner/name" (downloaded into the Hub cache) or
    a local folder. Anything without the prefix is a local path only: never looked up on the Hub."""
    text = str(repo_or_dir)
    if is_hub_id(text):
        text = text[len(HUB_PREFIX) :]
    elif not Path(text).is_dir():
        raise FaceganError(not_found(text))
    try:
        hub = HubGenerator.from_pretrained(
            text,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            device=device,
            amp=amp,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError, RecursionError) as err:
        # The mixin fetches config.json first and lets a network failure through as it comes (and
        # json-parses it: a crafted one nested too deep is a RecursionError).
        raise FaceganError(_fetch_failed(text, err)) from None
    return hub.model


def _fetch_failed(repo: str, err: Exception) -> str:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"could not get Hub repo {repo!r} ({reason}); check the id and the network, or pass a local folder"


def save_pretrained(
    model: nn.Module,
    out: str | Path,
    card: dict[str, Any] | None = None,
    samples: Path | None = None,
    repo_id: str | None = None,
    push_to_hub: bool = False,
    half: bool = False,
) -> Path:
    """Write the Hub layout of `model` into folder `out` (replacing an earlier export's model card);
    with `push_to_hub`, also upload it to `repo_id`; `half` stores the weights as float16."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FaceganError(f"--out {str(out)!r} is a file; the Hub layout is a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / HUB_WEIGHTS).is_file():
        raise FaceganError(
            f"--out {str(out)!r} is a folder with other files in it; give a new or empty "
            f"folder (or an earlier Hub export to replace)"
        )
    try:
        (out / HUB_CARD).unlink(missing_ok=True)  # the mixin keeps an existing card; this export's is new
        hub_model = HubGenerator(model, card, samples, half)
        hub_model.save_pretrained(out, repo_id=repo_id, push_to_hub=push_to_hub)
    except OSError as err:
        raise FaceganError(f"could not write {str(out)!r}: {err.strerror or err}") from None
    return out


# ----------------------------------------------------------------------------- model cards


def card_for(
    source: str | None, model: nn.Module, license: str | None = None, datasets: list[str] | None = None
) -> tuple[dict[str, Any], Path | None]:
    """(card, sample image) for a generator loaded from `source`: a shipped name, a local path, or
    anything else (a repo id, None: a card of the architecture alone)."""
    from facegan.sharing import pretrained

    samples: Path | None
    if source in pretrained.available():
        card, samples = card_for_shipped(source)
    else:
        path = Path(source) if source else None
        card, samples = card_for_run(path if path and path.exists() else None, model, license, datasets)
    return {
        **card,
        **({"license": license} if license else {}),
        **({"datasets": datasets} if datasets else {}),
    }, samples


def card_for_shipped(name: str) -> tuple[dict[str, Any], Path]:
    """(card, sample image) of a generator shipped with facegan: its own model card as the body."""
    from facegan.sharing import pretrained

    body = (
        pretrained.model_card(name)
        .replace(f"]({name}.png)", f"]({HUB_SAMPLES})")
        .replace(f"`{name}.safetensors`", f"`{HUB_WEIGHTS}`")
    )
    body += _usage(name)
    return {**SHIPPED.get(name, {}), "body": body}, pretrained.path(name).with_suffix(".png")


def card_for_run(
    source: Path | None, model: nn.Module, license: str | None = None, datasets: list[str] | None = None
) -> tuple[dict[str, Any], Path | None]:
    """(card, latest sample grid) for a checkpoint, run folder or .safetensors export: architecture,
    training run (config.json, dataset_manifest.json) and the last evaluation (metrics.jsonl)."""
    g = unwrap_inference(model)
    run = (
        None
        if source is None
        else source
        if source.is_dir()
        else source.parent.parent
        if source.parent.name == "checkpoints"
        else None
    )
    title = "facegan-generator" if source is None else source.stem if source.is_file() else source.name
    cfg = _read_json(run / "config.json") if run else {}
    manifest = _read_json(run / "dataset_manifest.json") if run else {}
    evals = _read_jsonl(run / "metrics.jsonl") if run else []
    samples = sorted((run / "samples").glob("step-*.png")) if run and (run / "samples").is_dir() else []
    m = model_config(g)
    lines = [
        f"# {title} — a facegan {m.arch} generator",
        "",
        "![samples](samples.png)" if samples else "",
        "",
        "| | |",
        "|---|---|",
        f"| Architecture | {m.arch}, {m.size}×{m.size} RGB, latent {m.latent_dim}, ngf {m.ngf} |",
    ]
    if cfg:
        t = cfg.get("train", {})
        lines.append(f"| Preset | {cfg.get('preset')} (full config in the training run's config.json) |")
        lines.append(
            f"| Training | batch {t.get('batch_size')}, seed {t.get('seed')}, steps "
            f"{t.get('steps') or str(t.get('epochs')) + ' epochs'} |"
        )
    if manifest:
        lines.append(
            f"| Data | {manifest.get('count')} images ({manifest.get('source_kind')}), content hash "
            f"`{manifest.get('content_hash')}` |"
        )
    unknown = "not given at export: the weights derive from the training data and carry its licence"
    lines.append(f"| Licence | {license or unknown} |")
    metrics = [k for k in (evals[-1] if evals else {}) if k not in ("step", "kimg", "time", "num_fake")]
    if evals:
        last = evals[-1]
        lines += [
            "",
            f"Measured by `facegan evaluate` at step {last.get('step')}:",
            "",
            "| metric | value |",
            "|---|---|",
            *(f"| {k} | {last[k]:.4g} |" for k in metrics if isinstance(last[k], (int, float))),
        ]
    card = {
        "license": license,
        "datasets": datasets or None,
        "metrics": sorted({f for k in metrics for f in METRIC_FAMILIES if k.startswith(f)}) or None,
        "body": "\n".join(lines) + _usage(None),
    }
    return card, samples[-1] if samples else None


def _usage(name: str | None) -> str:
    shipped = f" from the shipped `{name}`" if name else ""
    return f"""

## Use it

```bash
# facegan is not on PyPI: install it from its repository (in a clone: pip install -e .)
facegan generate --checkpoint <this folder> --n 16 --out faces.png
```

```python
import facegan
g = facegan.load("hf:<user>/<repo>")    # this model on the Hub (or the path of its local folder)
faces = g.generate(seeds=range(8))      # PIL images; a seed always names the same face
```

Written by facegan {__version__} (`facegan export --format hub`){shipped}.
"""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a torn last line from a hard kill
    return out
