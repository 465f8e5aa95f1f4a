"""The SD 2.1 KL-f8 autoencoder and the temporal decoder released with Stable Video Diffusion.

Parameter names are the sgm/ldm names without the `first_stage_model.` prefix (`encoder.down.0.block.1.conv1`,
`decoder.up.3.block.0.time_stack.in_layers.2`, `quant_conv`, ...), so official files load strictly by
stripping that prefix. Latents leave `encode` and enter `decode` unscaled; multiply by `scale_factor`
(0.18215 for the SD 2.1 VAE) to get the diffusion model's latents.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SD21_LATENT_SCALE = 0.18215
"""Scale that gives the SD 2.1 VAE latents roughly unit variance (diffusion targets only)."""

SPATIAL_NORM_EPS = 1e-6
TEMPORAL_NORM_EPS = 1e-5


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of a KL autoencoder; the defaults are the SD 2.1 VAE (`sd21`)."""

    in_channels: int = 3
    out_channels: int = 3
    base_channels: int = 128
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 4)
    res_blocks_per_level: int = 2
    latent_channels: int = 4
    mid_attention: bool = True
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    temporal_decoder: bool = False
    video_kernel_size: tuple[int, int, int] = (3, 1, 1)
    norm_groups: int = 32
    scale_factor: float = SD21_LATENT_SCALE
    decode_chunk_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_multipliers", tuple(int(m) for m in self.channel_multipliers))
        object.__setattr__(self, "video_kernel_size", tuple(int(k) for k in self.video_kernel_size))
        if not self.channel_multipliers or min(self.channel_multipliers) < 1:
            raise ValueError(f"channel_multipliers must be positive integers, got {self.channel_multipliers}")
        for channels in self.level_channels:
            if channels % self.norm_groups:
                raise ValueError(
                    f"norm_groups={self.norm_groups} must divide every level width {self.level_channels}; "
                    "change base_channels or norm_groups"
                )
        if len(self.video_kernel_size) != 3 or any(k % 2 == 0 for k in self.video_kernel_size):
            raise ValueError(f"video_kernel_size must be three odd sizes (t, h, w), got {self.video_kernel_size}")
        if self.decode_chunk_size is not None and self.decode_chunk_size < 1:
            raise ValueError(f"decode_chunk_size must be None or >= 1, got {self.decode_chunk_size}")

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_multipliers)

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.channel_multipliers) - 1)


AUTOENCODER_PRESETS: dict[str, AutoencoderConfig] = {
    "tiny": AutoencoderConfig(base_channels=32, channel_multipliers=(1, 2), res_blocks_per_level=1),
    "sd21": AutoencoderConfig(),
    # The SVD release: SD 2.1 encoder, temporal decoder, no post-quant conv (as in the official engine).
    "svd": AutoencoderConfig(temporal_decoder=True, use_post_quant_conv=False),
}


def build_autoencoder(preset: str = "tiny", **overrides) -> AutoencoderKL:
    """Build a preset (`tiny`, `sd21`, `svd`) with any `AutoencoderConfig` field overridden."""
    if preset not in AUTOENCODER_PRESETS:
        raise ValueError(f"unknown autoencoder preset {preset!r}; choose one of {sorted(AUTOENCODER_PRESETS)}")
    return AutoencoderKL(configure(AUTOENCODER_PRESETS[preset], **overrides))


def configure(base: AutoencoderConfig, **overrides) -> AutoencoderConfig:
    """`base` with `overrides` applied; an unknown field name is one clear error."""
    fields = {f.name for f in dataclasses.fields(AutoencoderConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown autoencoder option(s) {unknown}; valid options: {sorted(fields)}")
    return dataclasses.replace(base, **overrides)


class DiagonalGaussian:
    """The encoder posterior N(mean, exp(logvar)) per latent element (log-variance clamped to [-30, 20])."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = torch.chunk(moments, 2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def kl(self) -> torch.Tensor:
        """KL divergence to N(0, I), summed over latent channels and pixels (one value per sample)."""
        return 0.5 * torch.sum(self.mean**2 + self.var - 1.0 - self.logvar, dim=(1, 2, 3))


def spatial_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=SPATIAL_NORM_EPS)


class Float32GroupNorm(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype, as the temporal blocks were trained."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


class ResnetBlock(nn.Module):
    """GN-SiLU-conv twice plus a (1x1-projected where widths differ) skip; no time embedding."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = spatial_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = spatial_norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class TemporalResBlock(nn.Module):
    """Residual block over (B, C, T, H, W) with (3, 1, 1) convolutions, no time embedding.

    Layer indices (`in_layers.2`, `out_layers.3`) follow the release; the output conv starts at zero so
    the block is the identity until trained.
    """

    def __init__(self, channels: int, kernel_size: tuple[int, int, int], groups: int):
        super().__init__()
        padding = tuple(k // 2 for k in kernel_size)
        self.in_layers = nn.Sequential(
            Float32GroupNorm(groups, channels, eps=TEMPORAL_NORM_EPS),
            nn.SiLU(),
            nn.Conv3d(channels, channels, kernel_size, padding=padding),
        )
        out_conv = nn.Conv3d(channels, channels, kernel_size, padding=padding)
        nn.init.zeros_(out_conv.weight)
        nn.init.zeros_(out_conv.bias)
        # Index 2 held the (rate 0) dropout in the release; keeping the slot keeps `out_layers.3` as its name.
        self.out_layers = nn.Sequential(
            Float32GroupNorm(groups, channels, eps=TEMPORAL_NORM_EPS), nn.SiLU(), nn.Identity(), out_conv
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out_layers(self.in_layers(x))


def frames_to_clips(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B*T, C, H, W) -> (B, C, T, H, W)."""
    if num_frames < 1 or x.shape[0] % num_frames:
        raise ValueError(f"batch of {x.shape[0]} frames is not a whole number of clips of {num_frames} frames")
    return x.unflatten(0, (-1, num_frames)).transpose(1, 2)


def clips_to_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W)."""
    return x.transpose(1, 2).flatten(0, 1)


class VideoResnetBlock(ResnetBlock):
    """A spatial ResnetBlock followed by a temporal ResBlock, blended as
    `alpha * temporal + (1 - alpha) * spatial` with `alpha = sigmoid(mix_factor)` (logit starts at 0).

    Note the convention is the opposite of the UNet's blender, where alpha weights the spatial path.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, kernel_size: tuple[int, int, int]):
        super().__init__(in_channels, out_channels, groups)
        self.time_stack = TemporalResBlock(out_channels, kernel_size, groups)
        self.mix_factor = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        if num_frames is None:
            raise ValueError("the temporal decoder needs num_frames (frames per clip in this batch)")
        spatial = frames_to_clips(super().forward(x), num_frames)
        temporal = self.time_stack(spatial)
        alpha = torch.sigmoid(self.mix_factor).to(spatial.dtype)
        return clips_to_frames(alpha * temporal + (1.0 - alpha) * spatial)


class AttentionBlock(nn.Module):
    """Single-head self-attention over all pixels with 1x1-conv projections (ldm `AttnBlock`)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = spatial_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        batch, channels, height, width = x.shape

        def tokens(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, 1, channels, height * width).transpose(2, 3)

        attended = F.scaled_dot_product_attention(tokens(self.q(h)), tokens(self.k(h)), tokens(self.v(h)))
        attended = attended.transpose(2, 3).reshape(batch, channels, height, width)
        return x + self.proj_out(attended)


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one pixel on the right and bottom only (as the weights expect)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TimeMixedConv2d(nn.Conv2d):
    """A Conv2d followed by a Conv3d over time (`time_mix_conv`), the temporal decoder's output layer."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int, int]):
        super().__init__(in_channels, out_channels, 3, padding=1)
        self.time_mix_conv = nn.Conv3d(
            out_channels, out_channels, kernel_size, padding=tuple(k // 2 for k in kernel_size)
        )

    def forward(self, x: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        if num_frames is None:
            raise ValueError("the temporal decoder needs num_frames (frames per clip in this batch)")
        return clips_to_frames(self.time_mix_conv(frames_to_clips(super().forward(x), num_frames)))


class MidBlock(nn.Module):
    """ResnetBlock, (optional) attention, ResnetBlock at the lowest resolution."""

    def __init__(self, channels: int, make_block, attention: bool, groups: int):
        super().__init__()
        self.block_1 = make_block(channels, channels)
        self.attn_1 = AttentionBlock(channels, groups) if attention else None
        self.block_2 = make_block(channels, channels)

    def forward(self, x: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        x = self.block_1(x, num_frames)
        if self.attn_1 is not None:
            x = self.attn_1(x)
        return self.block_2(x, num_frames)


class Level(nn.Module):
    """One resolution level: `block.N` ResnetBlocks and an optional resampler (`downsample`/`upsample`)."""

    def __init__(self, blocks: list[nn.Module], resample_name: str | None, resampler: nn.Module | None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.resample_name = resample_name
        if resample_name is not None:
            self.add_module(resample_name, resampler)

    def forward(self, x: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        for block in self.block:
            x = block(x, num_frames)
        if self.resample_name is not None:
            x = getattr(self, self.resample_name)(x)
        return x


class Encoder(nn.Module):
    """Image -> 2 * latent_channels moments (mean and log-variance) at 1/downsampling_factor resolution."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        groups, widths = config.norm_groups, config.level_channels
        self.conv_in = nn.Conv2d(config.in_channels, config.base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        previous = config.base_channels
        for index, width in enumerate(widths):
            blocks = []
            for _ in range(config.res_blocks_per_level):
                blocks.append(ResnetBlock(previous, width, groups))
                previous = width
            last = index == len(widths) - 1
            self.down.append(Level(blocks, None if last else "downsample", None if last else Downsample(width)))
        self.mid = MidBlock(previous, lambda i, o: ResnetBlock(i, o, groups), config.mid_attention, groups)
        self.norm_out = spatial_norm(previous, groups)
        self.conv_out = nn.Conv2d(previous, 2 * config.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent -> image; with `temporal_decoder` every ResnetBlock is a VideoResnetBlock and the output conv
    mixes frames, so frames must arrive as whole clips with `num_frames` given."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        groups, widths = config.norm_groups, config.level_channels
        kernel = config.video_kernel_size

        def make_block(in_channels: int, out_channels: int) -> nn.Module:
            if config.temporal_decoder:
                return VideoResnetBlock(in_channels, out_channels, groups, kernel)
            return ResnetBlock(in_channels, out_channels, groups)

        previous = widths[-1]
        self.conv_in = nn.Conv2d(config.latent_channels, previous, 3, padding=1)
        self.mid = MidBlock(previous, make_block, config.mid_attention, groups)
        levels: list[Level] = []
        for index in reversed(range(len(widths))):
            blocks = []
            for _ in range(config.res_blocks_per_level + 1):
                blocks.append(make_block(previous, widths[index]))
                previous = widths[index]
            first = index == 0
            levels.insert(0, Level(blocks, None if first else "upsample", None if first else Upsample(previous)))
        self.up = nn.ModuleList(levels)
        self.norm_out = spatial_norm(previous, groups)
        if config.temporal_decoder:
            self.conv_out = TimeMixedConv2d(previous, config.out_channels, kernel)
        else:
            self.conv_out = nn.Conv2d(previous, config.out_channels, 3, padding=1)
        self.temporal = config.temporal_decoder

    def forward(self, z: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        h = self.mid(self.conv_in(z), num_frames)
        for level in reversed(self.up):
            h = level(h, num_frames)
        h = F.silu(self.norm_out(h))
        return self.conv_out(h, num_frames) if self.temporal else self.conv_out(h)


class AutoencoderKL(nn.Module):
    """KL-regularised autoencoder: `encode` gives a DiagonalGaussian posterior, `decode` maps latents back.

    Decoding runs in chunks of `decode_chunk_size` frames per clip (memory); the temporal decoder mixes
    frames only within a chunk, so each chunk is a run of consecutive frames of every clip.
    """

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        self.scale_factor = config.scale_factor
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        moments = 2 * config.latent_channels
        self.quant_conv = nn.Conv2d(moments, moments, 1) if config.use_quant_conv else None
        latent = config.latent_channels
        self.post_quant_conv = nn.Conv2d(latent, latent, 1) if config.use_post_quant_conv else None

    @property
    def temporal(self) -> bool:
        return self.config.temporal_decoder

    def encode(self, x: torch.Tensor, chunk_size: int | None = None) -> DiagonalGaussian:
        """Images (N, C, H, W) in [-1, 1] -> posterior over unscaled latents; `chunk_size` images at a time."""
        pieces = [x] if chunk_size is None else list(x.split(chunk_size))
        moments = []
        for piece in pieces:
            h = self.encoder(piece)
            moments.append(h if self.quant_conv is None else self.quant_conv(h))
        return DiagonalGaussian(torch.cat(moments))

    def decode(
        self, z: torch.Tensor, num_frames: int | None = None, decode_chunk_size: int | None = None
    ) -> torch.Tensor:
        """Unscaled latents (B*T, C, h, w), clips frame-contiguous, -> images (B*T, C_out, H, W).

        `num_frames` (T) is required by the temporal decoder; `decode_chunk_size` (default from the config)
        bounds how many frames per clip are decoded together.
        """
        chunk = decode_chunk_size or self.config.decode_chunk_size
        if not self.temporal:
            pieces = [z] if chunk is None else list(z.split(chunk))
            return torch.cat([self._decode_frames(piece, None) for piece in pieces])
        if num_frames is None:
            raise ValueError("the temporal decoder needs num_frames (frames per clip) to decode")
        if num_frames < 1 or z.shape[0] % num_frames:
            raise ValueError(f"{z.shape[0]} latent frames are not a whole number of {num_frames}-frame clips")
        clips = z.unflatten(0, (-1, num_frames))
        chunk = chunk or num_frames
        decoded = []
        for start in range(0, num_frames, chunk):
            piece = clips[:, start : start + chunk]
            frames = self._decode_frames(piece.flatten(0, 1), piece.shape[1])
            decoded.append(frames.unflatten(0, piece.shape[:2]))
        return torch.cat(decoded, dim=1).flatten(0, 1)

    def _decode_frames(self, z: torch.Tensor, num_frames: int | None) -> torch.Tensor:
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z, num_frames)

    def encode_to_latents(
        self, x: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Images -> diffusion latents: a posterior sample (or the mode) times `scale_factor`."""
        posterior = self.encode(x)
        latents = posterior.sample(generator) if sample else posterior.mode()
        return latents * self.scale_factor

    def latent_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images -> mean and std of their diffusion latents (the posterior times `scale_factor`): stored once, a
        training step draws mean + std * noise, as `encode_to_latents(sample=True)` does."""
        posterior = self.encode(x)
        return posterior.mean * self.scale_factor, posterior.std * self.scale_factor

    def decode_latents(
        self, latents: torch.Tensor, num_frames: int | None = None, decode_chunk_size: int | None = None
    ) -> torch.Tensor:
        """Diffusion latents (scaled by `scale_factor`) -> images."""
        return self.decode(latents / self.scale_factor, num_frames, decode_chunk_size)

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int | None = None,
        sample_posterior: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Reconstruction and posterior of images (N, C, H, W); the temporal decoder needs `num_frames`."""
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z, num_frames), posterior
