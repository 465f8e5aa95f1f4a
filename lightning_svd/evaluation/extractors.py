"""Video feature extractors for FVD, chosen by config: the paper's I3D torchscript, torchvision video
classifiers with local weights, and random networks for the tiny profile.

Every extractor takes uint8 videos (B, T, 3, H, W) in [0, 255] and returns float features (B, num_features).
`identity()` names everything that changes the features (including a hash of the weight file), so cached
real-video statistics are keyed by it; `comparable` and `reason` say whether numbers made with it can stand
beside the paper's (only the I3D torchscript called with the paper's flags can).
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

PAPER_I3D_FLAGS = {"rescale": True, "resize": True}
RANDOM_INIT_REASON = "random-init extractor"
_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) so a large weight file is read once."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def check_videos(videos: torch.Tensor) -> torch.Tensor:
    if videos.dtype != torch.uint8 or videos.ndim != 5 or videos.shape[2] != 3:
        raise ValueError(f"extractors take uint8 videos (B, T, 3, H, W), got {videos.dtype} {tuple(videos.shape)}")
    return videos


class VideoFeatureExtractor(nn.Module, ABC):
    """A frozen network: uint8 videos (B, T, 3, H, W) -> features (B, num_features)."""

    num_features: int
    comparable: bool = False
    reason: str | None = None

    @abstractmethod
    def identity(self) -> dict:
        """Everything that decides the features (kind, weight-file hash, pre-processing), JSON-serialisable."""

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        """Stays in eval mode: dropout or batch-norm updates would change the features between calls."""
        return super().train(False)


class I3DTorchscript(VideoFeatureExtractor):
    """The Kinetics-400 I3D torchscript port of the tf-hub model (StyleGAN-V, Brooks et al.) from a local file.

    It takes uint8 (B, 3, T, H, W); `rescale=True` maps [0, 255] to [-1, 1] inside, `resize=True` resizes
    every frame to 224x224 inside, `return_features=True` returns the 400 pre-softmax logits. The paper
    (SVD E.4) calls it with all three set to True.
    """

    def __init__(self, path: str | Path, rescale: bool = True, resize: bool = True, num_features: int = 400):
        super().__init__()
        path = Path(path).expanduser()
        if not path.is_file():
            raise UserError(f"I3D torchscript not found: {path}; give the local i3d_torchscript.pt (weights.i3d in "
                            "eval_ucf101, the extractor's i3d_torchscript.path elsewhere)")
        try:
            with warnings.catch_warnings():  # torchscript is deprecated, but it is the format the port ships in
                warnings.simplefilter("ignore", FutureWarning)
                self.model = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as error:
            raise UserError(f"{path} is not a torchscript file: {str(error).splitlines()[0]}") from None
        self.path, self.rescale, self.resize, self.num_features = path, bool(rescale), bool(resize), num_features
        flags = {"rescale": self.rescale, "resize": self.resize}
        self.comparable = flags == PAPER_I3D_FLAGS
        self.reason = None if self.comparable else f"I3D flags {flags} differ from the paper's {PAPER_I3D_FLAGS}"
        self.freeze()

    def identity(self) -> dict:
        return {"kind": "i3d_torchscript", "sha256": file_sha256(self.path), "rescale": self.rescale,
                "resize": self.resize, "return_features": True}

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        clips = check_videos(videos).permute(0, 2, 1, 3, 4).contiguous()
        features = self.model(clips, rescale=self.rescale, resize=self.resize, return_features=True)
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"{self.path} returned features {tuple(features.shape)}, "
                             f"expected (B, {self.num_features})")
        return features.float()


def _drop_head(model: nn.Module) -> nn.Module:
    """Replace the classification layer by Identity: the forward pass then returns the pooled features."""
    for name in ("fc", "head", "classifier"):
        if hasattr(model, name):
            setattr(model, name, nn.Identity())
            return model
    raise ValueError(f"{type(model).__name__}: no classification head (fc, head or classifier) found")


def _head_in_features(model: nn.Module) -> int:
    head = next(getattr(model, n) for n in ("fc", "head", "classifier") if hasattr(model, n))
    layers = [m for m in head.modules() if isinstance(m, nn.Linear | nn.Conv3d)]
    return layers[-1].in_features if isinstance(layers[-1], nn.Linear) else layers[-1].in_channels


class TorchvisionVideoClassifier(VideoFeatureExtractor):
    """A torchvision Kinetics-400 video classifier's pooled features (the layer before the classifier).

    Weights come from a local state-dict file of the full classifier (never torchvision's download); without
    a file the network is random and labelled so. Pre-processing is torchvision's own preset for the
    architecture's Kinetics weights (resize, centre crop, mean/std; reading it downloads nothing);
    `resize_size`/`crop_size` override the sizes.
    """

    ARCHITECTURES = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s",
                     "swin3d_b")

    def __init__(self, arch: str, weights: str | Path | None = None, resize_size=None, crop_size=None,
                 seed: int = 0):
        super().__init__()
        import torchvision.models.video as video_models
        from torchvision.models import get_model_weights

        if arch not in self.ARCHITECTURES:
            raise UserError(f"unknown torchvision video architecture '{arch}'; choose one of {self.ARCHITECTURES}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = getattr(video_models, arch)(weights=None)
        self.arch, self.seed, self.weights = arch, seed, None
        if weights is not None:
            self.weights = Path(weights).expanduser()
            if not self.weights.is_file():
                raise UserError(f"{arch} weights not found: {self.weights}; give a local state-dict file")
            from ..models.state_dict_io import read_state_dict

            missing, unexpected = model.load_state_dict(read_state_dict(self.weights), strict=False)
            if missing or unexpected:
                raise UserError(f"{self.weights} does not fit torchvision {arch}: {len(missing)} missing keys "
                                f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})")
        self.num_features = _head_in_features(model)
        self.model = _drop_head(model)
        preset = get_model_weights(arch).DEFAULT.transforms()
        self.resize_size = list(resize_size or preset.resize_size)
        self.crop_size = list(crop_size or preset.crop_size)
        self.preprocess = type(preset)(crop_size=self.crop_size, resize_size=self.resize_size, mean=preset.mean,
                                       std=preset.std, interpolation=preset.interpolation)
        self.comparable = False
        self.reason = (RANDOM_INIT_REASON if self.weights is None
                       else f"torchvision {arch} features, not the paper's I3D")
        self.freeze()

    def identity(self) -> dict:
        weights = {"sha256": file_sha256(self.weights)} if self.weights else {"random_init_seed": self.seed,
                                                                             "torch": torch.__version__}
        return {"kind": "torchvision", "arch": self.arch, **weights, "resize_size": self.resize_size,
                "crop_size": self.crop_size}

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(check_videos(videos))).float()


class RandomVideoFeatures(VideoFeatureExtractor):
    """A small random 3D-conv network for the tiny profile: features without any weights file.

    The weights follow from `seed` alone (He-normal, drawn from a private generator), so every run with the
    same seed extracts the same features. Numbers made with it rank sets against each other but mean nothing
    beside the paper's, and every result says so.
    """

    def __init__(self, num_features: int = 64, size: int = 64, seed: int = 0, width: int = 16):
        super().__init__()
        self.num_features, self.size, self.seed, self.width = num_features, size, seed, width
        self.net = nn.Sequential(
            nn.Conv3d(3, width, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2)), nn.ReLU(),
            nn.Conv3d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv3d(2 * width, num_features, 3, stride=2, padding=1),
        )
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Conv3d):
                    fan_in = layer.weight[0].numel()
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                    layer.bias.zero_()
        self.comparable, self.reason = False, RANDOM_INIT_REASON
        self.freeze()

    def identity(self) -> dict:
        return {"kind": "random", "num_features": self.num_features, "size": self.size, "seed": self.seed,
                "width": self.width}

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        batch, frames = check_videos(videos).shape[:2]
        x = videos.flatten(0, 1).float() / 127.5 - 1.0
        x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True,
                                      align_corners=False)
        x = x.unflatten(0, (batch, frames)).transpose(1, 2)
        return self.net(x).mean(dim=(2, 3, 4))


def build_extractor(spec: Mapping) -> VideoFeatureExtractor:
    """An extractor from its config section: `kind` is i3d_torchscript, torchvision or random.

    i3d_torchscript: path, rescale, resize. torchvision: arch, weights (null = random), resize_size, crop_size,
    seed. random: num_features, size, seed.
    """
    spec = dict(spec)
    kind = spec.pop("kind", None)
    builders = {"i3d_torchscript": I3DTorchscript, "torchvision": TorchvisionVideoClassifier,
                "random": RandomVideoFeatures}
    if kind not in builders:
        raise UserError(f"unknown feature extractor kind {kind!r}; choose one of {', '.join(builders)}")
    accepted = [name for name in inspect.signature(builders[kind].__init__).parameters if name != "self"]
    unknown = sorted(set(spec) - set(accepted))
    if unknown:
        raise UserError(f"feature extractor '{kind}' has no setting {unknown}; its settings: {', '.join(accepted)}")
    return builders[kind](**spec)
