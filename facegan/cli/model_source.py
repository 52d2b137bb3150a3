"""What the verbs that read a generator share: `--pretrained NAME` (one shipped with facegan) or
`--checkpoint PATH` (or `--fakes`, for evaluate), `--device` and the inference `--amp`."""

from __future__ import annotations

from jsonargparse import Namespace

from facegan.cli.flags import Parser, one_of
from facegan.config.schema import INFERENCE_AMP_DEFAULT, InferenceAmp
from facegan.runtime.device import DEFAULT_DEVICE, DEVICE_HELP


def add_model_source(p: Parser, fakes: bool = False) -> None:
    """--checkpoint, --pretrained (and --fakes): exactly one names what the verb reads (`model_path`)."""
    src = p
    if fakes:
        src.add_argument(
            "--fakes",
            type=str | None,
            help="a folder or .zip of images to measure instead of a generator "
            "(any generator's output, or a perturbed real set)",
        )
    src.add_argument(
        "--checkpoint",
        type=str | None,
        help="training checkpoint (.pt), run folder, exported generator (.safetensors) or Hub-layout folder",
    )
    src.add_argument(
        "--pretrained", type=str | None, help="a generator shipped with facegan: celeba64, anime64"
    )


def model_path(args: Namespace, fakes: bool = False) -> str:
    """The file the verb reads: a shipped generator's path or --checkpoint (one of them, checked)."""
    if one_of(args, *(("fakes",) if fakes else ()), "checkpoint", "pretrained") == "pretrained":
        from facegan.sharing import pretrained

        return str(pretrained.path(args.pretrained))
    return str(args.checkpoint)


def add_inference_amp(p: Parser) -> None:
    p.add_argument(
        "--amp",
        type=InferenceAmp,
        default=INFERENCE_AMP_DEFAULT,
        help="inference precision: off (default: exact fp32, the same pixels as the Python API, "
        "torch.hub and the page), auto (bf16 + channels_last on CUDA and on CPUs with native "
        "bf16, fp32 elsewhere), bf16",
    )


def add_device(p: Parser) -> None:
    """--device, as every verb that runs a model takes it (facegan.runtime.device decides "auto")."""
    p.add_argument("--device", type=str, default=DEFAULT_DEVICE, help=DEVICE_HELP)
