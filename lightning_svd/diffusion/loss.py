"""Loss weights lambda(sigma) and the denoising loss E[lambda(sigma) ||D(x0 + sigma n; sigma) - x0||^2]."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lightning_svd.diffusion.noise import training_noise
from lightning_svd.diffusion.preconditioning import data_std, per_channel
from lightning_svd.diffusion.registry import Registry
from lightning_svd.diffusion.tensors import per_sample

LOSS_WEIGHTINGS = Registry("loss weighting")


@LOSS_WEIGHTINGS.register("edm")
class EDMWeighting:
    """lambda = (s^2 + sd^2) / (s sd)^2 = 1 / c_out^2: unit weight on the raw network output (EDM eq. 8)."""

    def __init__(self, sigma_data: float | Sequence[float] = 0.5):
        self.sigma_data = data_std(sigma_data)

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        """(N,) weights, or (N, C) with a per-channel sigma_data."""
        sigma, sd = per_channel(sigma, self.sigma_data)
        return (sigma**2 + sd**2) / (sigma * sd) ** 2


@LOSS_WEIGHTINGS.register("v")
class VWeighting(EDMWeighting):
    """SVD's weight (1 + s^2) / s^2 = EDM with sigma_data = 1; equal to unit weight on v-prediction's error."""

    def __init__(self):
        super().__init__(sigma_data=1.0)


@LOSS_WEIGHTINGS.register("unit")
class UnitWeighting:
    """lambda = 1: plain mean squared error on the clean-sample estimate."""

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(sigma)


@LOSS_WEIGHTINGS.register("min_snr")
class MinSNRWeighting:
    """Min-SNR-gamma (Hang et al. 2023): lambda = min(SNR, gamma) with SNR = sd^2 / s^2.

    Caps the weight of nearly clean levels so they stop dominating the gradient.
    """

    def __init__(self, gamma: float = 5.0, sigma_data: float = 1.0):
        self.gamma = gamma
        self.sigma_data = sigma_data

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        snr = self.sigma_data**2 / sigma**2
        return snr.clamp(max=self.gamma)


@dataclass
class LossOutput:
    """The batch loss and what it is made of, per clip, for logging the loss per noise-level bucket."""

    loss: torch.Tensor
    per_clip: torch.Tensor
    sigmas: torch.Tensor


class DenoisingLoss:
    """Draw one sigma per clip, noise the clip, denoise, and weight the squared error (EDM eq. 2, SVD eq. 3).

    `denoise(x_noisy, sigma)` returns the clean estimate for frame rows x_noisy with per-frame sigma
    (bind the conditioning with functools.partial). Computed in float32.
    """

    def __init__(
        self, noise_distribution: Any, weighting: Any, offset_noise: float = 0.0, shared_frame_noise: float = 0.0
    ):
        self.noise_distribution = noise_distribution
        self.weighting = weighting
        self.offset_noise = offset_noise
        self.shared_frame_noise = shared_frame_noise

    def __call__(
        self,
        denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x0: torch.Tensor,
        num_frames: int = 1,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        if x0.shape[0] % num_frames:
            raise ValueError(f"{x0.shape[0]} frame rows is not a whole number of {num_frames}-frame clips")
        num_clips = x0.shape[0] // num_frames
        x0 = x0.float()
        sigmas = self.noise_distribution(num_clips, num_frames, device=x0.device, generator=generator)
        noise = training_noise(x0, num_frames, self.offset_noise, generator, self.shared_frame_noise)
        denoised = denoise(x0 + per_sample(sigmas, x0) * noise, sigmas)
        squared_error = (denoised.float() - x0) ** 2
        per_frame_weighted = per_sample(self.weighting(sigmas), x0) * squared_error
        per_clip = per_frame_weighted.reshape(num_clips, -1).mean(dim=1)
        return LossOutput(loss=per_clip.mean(), per_clip=per_clip, sigmas=sigmas[::num_frames])
