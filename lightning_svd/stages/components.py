"""The frozen parts a stage is built from config: the autoencoder (or a tiny stand-in) and the encoders.

`space_to_depth` is the tiny profile's autoencoder stand-in: it folds each f x f pixel patch into channels,
so tiny models train on (and sample) real pixels in seconds; `kl` is the SD 2.1 / SVD KL-f8 autoencoder.
Open_clip towers named `tiny` are small random-weight towers for CPU runs; any other name is an open_clip
model (for example ViT-H-14) whose weights come from a local file.
"""

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from lightning_svd.models import build_autoencoder, load_autoencoder
from lightning_svd.models.conditioners import CLIPImageEmbedder, OpenCLIPTextEncoder

TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


class Posterior:
    """The deterministic 'posterior' of the stand-in: its mode and its samples are the folded pixels."""

    def __init__(self, latents: torch.Tensor):
        self.latents = latents

    def mode(self) -> torch.Tensor:
        return self.latents

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.latents


class SpaceToDepthAutoencoder(nn.Module):
    """Invertible pixel folding (B, 3, H, W) <-> (B, 3 f^2, H/f, W/f): the autoencoder interface, no learning.

    A frozen identity 1x1 mix is its one parameter, so code that asks an autoencoder for its dtype works.
    """

    def __init__(self, factor: int = 2, channels: int = 3, scale: float = 1.0):
        super().__init__()
        if factor < 1 or scale <= 0:
            raise ValueError(f"space_to_depth needs factor >= 1 and scale > 0, got {factor} and {scale}")
        self.factor = factor
        self.latent_channels = channels * factor * factor
        self.scale_factor = scale
        self.mix = nn.Conv2d(self.latent_channels, self.latent_channels, 1, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(self.latent_channels)[:, :, None, None])
        self.requires_grad_(False)

    @property
    def downsampling_factor(self) -> int:
        return self.factor

    def encode(self, x: torch.Tensor) -> Posterior:
        return Posterior(self.mix(F.pixel_unshuffle(x, self.factor)))

    def encode_to_latents(self, x: torch.Tensor, sample: bool = True, generator=None) -> torch.Tensor:
        return self.encode(x).mode() * self.scale_factor

    def decode_latents(self, latents: torch.Tensor, num_frames: int | None = None, decode_chunk_size=None):
        unmixed = F.conv2d(latents / self.scale_factor, self.mix.weight.transpose(0, 1))
        return F.pixel_shuffle(unmixed, self.factor)


def build_stage_autoencoder(cfg: Mapping) -> nn.Module:
    """`kind: space_to_depth` (with `factor` and `scale`) or `kind: kl` (from `weights`, else a fresh `preset`);
    frozen."""
    kind = cfg["kind"]
    if kind == "space_to_depth":
        model = SpaceToDepthAutoencoder(int(cfg["factor"]), scale=float(cfg.get("scale", 1.0)))
    elif kind == "kl":
        model = load_autoencoder(cfg["weights"]) if cfg.get("weights") else build_autoencoder(cfg["preset"])
        model.latent_channels = model.config.latent_channels
        model.downsampling_factor = model.config.downsampling_factor
    else:
        raise ValueError(f"train.autoencoder.kind must be space_to_depth or kl, got {kind!r}")
    return model.eval().requires_grad_(False)


def open_clip_model(name: str):
    return TINY_OPEN_CLIP if name == "tiny" else name


def build_text_encoder(open_clip_cfg: Mapping, layer: str) -> OpenCLIPTextEncoder:
    return OpenCLIPTextEncoder(open_clip_model(open_clip_cfg["model"]), open_clip_cfg.get("weights"), layer=layer)


def build_image_encoder(open_clip_cfg: Mapping) -> CLIPImageEmbedder:
    return CLIPImageEmbedder(open_clip_model(open_clip_cfg["model"]), open_clip_cfg.get("weights"))
