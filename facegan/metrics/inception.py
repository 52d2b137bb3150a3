"""The standard FID Inception-v3 feature extractor, loaded from a local weights file only.

FID and KID are only comparable with published numbers when computed with the Inception graph of
TensorFlow's 2015-12-05 release (as converted by pytorch-fid / torch-fidelity) and torch-fidelity's
TF1-compatible bilinear resize to 299×299. torch-fidelity provides both; facegan wraps its network.

torch-fidelity would download the weights on first use with `torch.hub.load_state_dict_from_url`,
which can hang for minutes behind a firewall. facegan never downloads: it uses, in order, an
explicit path (`--inception-weights`), `$FACEGAN_INCEPTION_WEIGHTS`, or a copy already in torch's
hub cache (where torch-fidelity's own download would have put it), and otherwise fails at once with
a message saying where to get the file.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from facegan.errors import FaceganError
from facegan.storage.untrusted import read_regular

# A feature extractor maps a uint8 batch (B, 3, H, W) in [0, 255] to float features (B, D).
FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
# torch-fidelity publishes the same converted weights (same state-dict keys) under this name.
FIDELITY_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
FIDELITY_WEIGHTS_URL = (
    f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{FIDELITY_WEIGHTS_FILE}"
)
WEIGHTS_ENV = "FACEGAN_INCEPTION_WEIGHTS"
# The real file is 95 MB; anything far larger is not it, and is refused before it is read.
MAX_WEIGHTS_BYTES = 256 * 2**20
# Names network, layer and resize: cached real features are only reusable when all three match.
INCEPTION_ID = "inception-2015-12-05-pool3-2048-tf1bilinear299"


def hub_checkpoint_dir() -> Path:
    """Where torch.hub (and so torch-fidelity) keeps downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_weights_message() -> str:
    """The one-line error shown when FID/KID are requested and no weights file can be found."""
    return (
        f"FID/KID need the Inception weights file {WEIGHTS_FILE}, which facegan never downloads: "
        f"get it from {WEIGHTS_URL} and pass --inception-weights PATH "
        f"(or set {WEIGHTS_ENV}=PATH, or put it in {hub_checkpoint_dir()}/)"
    )


def resolve_weights(weights_path: str | os.PathLike[str] | None = None) -> Path:
    """The Inception weights file to use: explicit path, then $FACEGAN_INCEPTION_WEIGHTS, then the
    torch hub cache; raises FaceganError (never downloads) when none is found."""
    if weights_path is not None:
        return _existing(Path(weights_path), "--inception-weights")
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return _existing(Path(env), f"${WEIGHTS_ENV}")
    for name in (WEIGHTS_FILE, FIDELITY_WEIGHTS_FILE):
        candidate = hub_checkpoint_dir() / name
        if candidate.is_file():
            return candidate
    raise FaceganError(missing_weights_message())


def _existing(path: Path, source: str) -> Path:
    path = path.expanduser()
    if not path.is_file():
        raise FaceganError(
            f"{source} {str(path)!r} is not a file; it should be {WEIGHTS_FILE} (from {WEIGHTS_URL})"
        )
    return path


class InceptionFeatures(nn.Module):
    """uint8 images (B, 3, H, W) → 2048-d pool3 features (B, 2048), float32.

    Resizing to 299×299 (TF1-compatible bilinear) and scaling to [-1, 1] happen inside
    torch-fidelity's network, so callers pass the dataset's pixels at their native size.
    """

    extractor_id = INCEPTION_ID

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        features: torch.Tensor
        (features,) = self.net(images)
        return features.float()


def inception_extractor(
    weights_path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
) -> InceptionFeatures:
    """The standard FID Inception network on `device`, from a local weights file (see module)."""
    path = resolve_weights(weights_path)
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise FaceganError("FID/KID need the torch-fidelity package (pip install torch-fidelity)") from None
    # Read once, as a regular file, and unpickled with weights_only=True (refuses pickles that could run
    # code). torch-fidelity would re-open the path and unpickle it without that guard, so it is handed
    # a serialisation of the vetted tensors instead: a file swapped in after the check is never read.
    advice = f"it should be {WEIGHTS_FILE} from {WEIGHTS_URL}"
    data = read_regular(path, "Inception weights", MAX_WEIGHTS_BYTES)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file gets the same advice
        raise FaceganError(
            f"cannot read Inception weights {str(path)!r} ({type(err).__name__}); {advice}"
        ) from None
    del data
    if (
        not isinstance(state, dict)
        or "Mixed_7c.branch_pool.conv.weight" not in state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise FaceganError(f"{str(path)!r} is not the FID Inception weights; {advice}")
    vetted = io.BytesIO()
    torch.save(state, vetted)  # plain tensors, written by this process
    del state
    vetted.seek(0)
    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], vetted)
    except RuntimeError as err:  # load_state_dict: missing/unexpected keys or shape mismatch
        first = str(err).splitlines()[0]
        raise FaceganError(
            f"{str(path)!r} does not fit the FID Inception network ({first}); {advice}"
        ) from None
    return InceptionFeatures(net).to(device).eval()


def extractor_id(extractor: FeatureExtractor) -> str | None:
    """A string naming what `extractor` computes, used to key the real-feature cache; None when it
    cannot be named safely (then nothing is cached).

    An `extractor_id` attribute wins; an nn.Module without one is named by its class and a hash of
    its parameters and buffers (so retrained weights never reuse stale features); a plain function
    is not cached, since its code could change under the same name.
    """
    explicit = getattr(extractor, "extractor_id", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    if isinstance(extractor, nn.Module):
        digest = hashlib.sha256()
        for key, tensor in extractor.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        cls = type(extractor)
        return f"{cls.__module__}.{cls.__qualname__}-{digest.hexdigest()[:16]}"
    return None
