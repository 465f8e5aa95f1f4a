"""Diffusion noise: the distribution of training noise levels (one per clip) and the Gaussian noise itself."""

import math

import torch

from lightning_svd.diffusion.registry import Registry
from lightning_svd.diffusion.schedules import DiscreteSchedule

NOISE_DISTRIBUTIONS = Registry("noise distribution")


@NOISE_DISTRIBUTIONS.register("log_normal")
class LogNormalSigmas:
    """ln sigma ~ N(P_mean, P_std^2) (EDM), drawn once per clip and shared by all of its frames.

    SVD's stages use (P_mean, P_std) = (-1.2, 1.0) image adaptation, (0.5, 1.4) HQ text-to-video,
    (0.7, 1.6) / (1.0, 1.6) image-to-video, (1.0, 1.2) interpolation; EDM's image default is (-1.2, 1.2).
    """

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2):
        if p_std < 0.0:
            raise ValueError(f"p_std must be non-negative, got {p_std}")
        self.p_mean = p_mean
        self.p_std = p_std

    def __call__(
        self,
        num_clips: int,
        num_frames: int = 1,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One sigma per frame row, shape (num_clips * num_frames,), equal within each clip."""
        normal = torch.randn(num_clips, generator=generator, device=device)
        sigmas = (self.p_mean + self.p_std * normal).exp()
        return sigmas.repeat_interleave(num_frames)


@NOISE_DISTRIBUTIONS.register("discrete")
class DiscreteTimestepSigmas:
    """A timestep uniform over a discrete schedule (SD 2.1's training), as its noise level, one per clip."""

    def __init__(self, num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012):
        self.schedule = DiscreteSchedule(num_timesteps, beta_start, beta_end)

    def __call__(
        self,
        num_clips: int,
        num_frames: int = 1,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        timesteps = torch.randint(0, self.schedule.num_timesteps, (num_clips,), generator=generator, device=device)
        return self.schedule.sigma(timesteps).repeat_interleave(num_frames)


def frame_noise(
    shape: tuple[int, ...],
    num_frames: int = 1,
    shared: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard Gaussian noise for (B*T, C, H, W) frame rows whose frames share `shared` of its variance.

    PYoCo's mixed noise prior (Ge et al. 2023): sqrt(shared) * one draw per clip + sqrt(1 - shared) * one draw
    per frame, so each element stays N(0, 1) and two frames of a clip correlate by `shared`. 0 draws every
    frame independently, as SVD does; a model must be sampled with the prior it was trained on.
    """
    if not 0.0 <= shared < 1.0:
        raise ValueError(f"shared frame noise must be in [0, 1), got {shared}")
    noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if shared == 0.0:
        return noise
    if shape[0] % num_frames:
        raise ValueError(f"{shape[0]} frame rows is not a whole number of {num_frames}-frame clips")
    per_clip = torch.randn((shape[0] // num_frames, 1, *shape[1:]), generator=generator, device=device, dtype=dtype)
    mixed = math.sqrt(shared) * per_clip + math.sqrt(1.0 - shared) * noise.unflatten(0, (-1, num_frames))
    return mixed.flatten(0, 1)


def training_noise(
    like: torch.Tensor,
    num_frames: int = 1,
    offset_noise: float = 0.0,
    generator: torch.Generator | None = None,
    shared_frame_noise: float = 0.0,
) -> torch.Tensor:
    """`frame_noise` shaped like (B*T, C, H, W) frames, plus optional offset noise.

    Offset noise (Guttenberg 2023) adds `offset * randn(B, C, 1, 1)`: one constant per clip and channel,
    shared by all T frames, which lets the model learn to shift a clip's overall brightness.
    """
    noise = frame_noise(like.shape, num_frames, shared_frame_noise, generator, like.device, like.dtype)
    if offset_noise == 0.0:
        return noise
    if like.shape[0] % num_frames:
        raise ValueError(f"{like.shape[0]} frame rows is not a whole number of {num_frames}-frame clips")
    clip_shape = (like.shape[0] // num_frames, like.shape[1]) + (1,) * (like.ndim - 2)
    offset = torch.randn(clip_shape, generator=generator, device=like.device, dtype=like.dtype)
    return noise + offset_noise * offset.repeat_interleave(num_frames, dim=0)
