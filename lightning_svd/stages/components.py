"""The frozen parts a stage is built from config: the autoencoder (or a tiny stand-in) and the encoders.

`space_to_depth` is the tiny profile's autoencoder stand-in: it folds each f x f pixel patch into channels,
so tiny models train on (and sample) real pixels in seconds, either as the pixels themselves or as their
orthonormal Haar wavelet coefficients; `kl` is the SD 2.1 / SVD KL-f8 autoencoder.
Open_clip towers named `tiny` are small random-weight towers for CPU runs; any other name is an open_clip
model (for example ViT-H-14) whose weights come from a local file.
"""

from collections.abc import Mapping, Sequence

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


def haar_matrix(size: int) -> torch.Tensor:
    """The orthonormal 1-D Haar transform of `size` (a power of 2) samples: rows are the basis, coarsest first."""
    if size < 1 or size & (size - 1):
        raise ValueError(f"the Haar basis needs a power-of-2 factor, got {size}")
    matrix = torch.ones(1, 1)
    while matrix.shape[0] < size:
        n = matrix.shape[0]
        averages = torch.kron(matrix, torch.tensor([[1.0, 1.0]]))
        details = torch.kron(torch.eye(n), torch.tensor([[1.0, -1.0]]))
        matrix = torch.cat([averages, details]) / 2**0.5
    return matrix


def haar_levels(size: int) -> torch.Tensor:
    """Level of each row of `haar_matrix(size)`: 0 for the mean, 1 for the coarsest detail, ... log2(size)."""
    return torch.tensor([0] + [int(row).bit_length() for row in range(1, size)])


def patch_basis(basis: str, factor: int, channels: int) -> torch.Tensor:
    """(C f^2, C f^2) orthonormal map from pixel_unshuffle's channels (colour-major) to latent channels."""
    if basis == "pixels":
        return torch.eye(channels * factor * factor)
    if basis == "haar":
        haar = haar_matrix(factor)
        return torch.block_diag(*[torch.kron(haar, haar)] * channels)
    raise ValueError(f"space_to_depth basis (train.autoencoder.basis) must be pixels or haar, got {basis!r}")


class SpaceToDepthAutoencoder(nn.Module):
    """Invertible pixel folding (B, 3, H, W) <-> (B, 3 f^2, H/f, W/f): the autoencoder interface, no learning.

    Basis `pixels` keeps the folded pixels; `haar` maps each patch to its orthonormal Haar coefficients
    (patch mean first, then details from coarse to fine), so pixel-scale detail and the smooth signal sit in
    separate channels. `detail_gains` > 1 scale the detail up before the diffusion: a young model passes the
    noise of those channels through instead of removing it, and decoding divides what it leaves by the gain
    (without gains, samples of the tiny proxies were pixel noise). The map is a frozen 1x1 mix, which is also the
    module's one parameter, so code that asks an autoencoder for its dtype works.
    """

    def __init__(self, factor: int = 2, channels: int = 3, scale: float = 1.0, basis: str = "pixels",
                 detail_gains: Sequence[float] = ()):
        super().__init__()
        if factor < 1 or scale <= 0:
            raise ValueError(f"space_to_depth needs factor >= 1 and scale > 0, got {factor} and {scale}")
        self.factor, self.basis = factor, basis
        self.latent_channels = channels * factor * factor
        self.scale_factor = scale
        self.mix = nn.Conv2d(self.latent_channels, self.latent_channels, 1, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(patch_basis(basis, factor, channels)[:, :, None, None])
        self.register_buffer("channel_gains", self._channel_gains(basis, detail_gains, channels), persistent=False)
        self.requires_grad_(False)

    def channel_levels(self) -> torch.Tensor:
        """(C f^2,) detail level of each latent channel: 0 for the patch means, then 1 (coarse) .. log2(f) (fine);
        with the pixel basis every channel counts as level 0."""
        if self.basis != "haar":
            return torch.zeros(self.latent_channels, dtype=torch.long)
        level = haar_levels(self.factor)
        return torch.maximum(level[:, None], level[None, :]).flatten().repeat(self.latent_channels // self.factor**2)

    def per_channel(self, per_level: Sequence[float]) -> list[float]:
        """One value per Haar level (patch means first) spread to every latent channel of that level."""
        levels = int(self.factor).bit_length()
        if self.basis != "haar" or len(per_level) != levels:
            raise ValueError(f"per-level values need basis haar and {levels} values (patch means, then each detail "
                             f"level of a {self.factor}x{self.factor} patch); got basis {self.basis!r} and "
                             f"{list(per_level)}")
        return [float(per_level[level]) for level in self.channel_levels()]

    def _channel_gains(self, basis: str, detail_gains: Sequence[float], channels: int) -> torch.Tensor:
        """(C f^2, 1, 1) extra gain per latent channel: 1 for the patch means, detail_gains[level - 1] else."""
        if not detail_gains:
            return torch.ones(self.latent_channels, 1, 1)
        levels = int(self.factor).bit_length() - 1
        if basis != "haar" or len(detail_gains) != levels or min(detail_gains) <= 0:
            raise ValueError(f"train.autoencoder.detail_gains needs basis haar and {levels} positive gain(s), one per "
                             f"detail level of a {self.factor}x{self.factor} patch; got basis {basis!r} and "
                             f"{list(detail_gains)}")
        level = haar_levels(self.factor)
        per_level = torch.tensor([1.0, *detail_gains])[torch.maximum(level[:, None], level[None, :]).flatten()]
        return per_level.repeat(channels)[:, None, None]

    @property
    def downsampling_factor(self) -> int:
        return self.factor

    def encode(self, x: torch.Tensor) -> Posterior:
        return Posterior(self.mix(F.pixel_unshuffle(x, self.factor)))

    def encode_to_latents(self, x: torch.Tensor, sample: bool = True, generator=None) -> torch.Tensor:
        return self.encode(x).mode() * self.channel_gains.to(x.dtype) * self.scale_factor

    def latent_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stand-in is deterministic: its latents with std 0."""
        latents = self.encode_to_latents(x)
        return latents, torch.zeros_like(latents)

    def decode_latents(self, latents: torch.Tensor, num_frames: int | None = None, decode_chunk_size=None):
        coefficients = latents / (self.channel_gains.to(latents.dtype) * self.scale_factor)
        unmixed = F.conv2d(coefficients, self.mix.weight.transpose(0, 1))
        return F.pixel_shuffle(unmixed, self.factor)


def build_stage_autoencoder(cfg: Mapping) -> nn.Module:
    """`kind: space_to_depth` (with `factor`, `scale`, `basis`, `detail_gains`) or `kind: kl` (from `weights`, else
    a fresh `preset`); frozen."""
    kind = cfg["kind"]
    if kind == "space_to_depth":
        model = SpaceToDepthAutoencoder(int(cfg["factor"]), scale=float(cfg.get("scale", 1.0)),
                                        basis=cfg.get("basis", "pixels"), detail_gains=cfg.get("detail_gains") or ())
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
