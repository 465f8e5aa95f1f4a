"""Preconditioning (Karras et al. 2022, Table 1) and the denoiser D(x, sigma) built from a raw network F.

D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma)), with the scalings computed in
float32 whatever precision the network runs in (as NVlabs/edm does).
"""

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from lightning_svd.diffusion.registry import Registry
from lightning_svd.diffusion.schedules import DiscreteSchedule
from lightning_svd.diffusion.tensors import expand_to_frames, per_sample

PRECONDITIONINGS = Registry("preconditioning")


class Scalings(NamedTuple):
    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def data_std(sigma_data: float | Sequence[float]) -> torch.Tensor:
    """sigma_data as a CPU tensor (also under a meta-device context): a scalar, or one value per latent channel."""
    values = [sigma_data] if isinstance(sigma_data, int | float) else list(sigma_data)
    if not values or any(not isinstance(v, int | float) or v <= 0 for v in values):
        raise ValueError(f"sigma_data must be a positive number or a list of them (one per channel), got {sigma_data}")
    return torch.tensor(float(sigma_data) if isinstance(sigma_data, int | float) else values, dtype=torch.float32,
                        device="cpu")


def per_channel(sigma: torch.Tensor, sd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sigma (N,) against a per-channel sd (C,) as (N, 1) and (1, C); a scalar sd leaves sigma as it is."""
    if sd.ndim == 0:
        return sigma, sd
    return sigma[:, None], sd.to(sigma.device)[None, :]


@PRECONDITIONINGS.register("edm")
class EDMPreconditioning:
    """Plain EDM: c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2), c_in = 1/sqrt(s^2+sd^2), c_noise = ln(s)/4.

    `sigma_data` may hold one value per latent channel (the EDM derivation holds per dimension of a diagonal data
    covariance): channels that carry little signal, such as the fine detail of a wavelet stand-in, then get c_skip
    near 0 and a small c_out, so a young network's error in them is scaled down instead of passed through.
    """

    def __init__(self, sigma_data: float | Sequence[float] = 0.5):
        self.sigma_data = data_std(sigma_data)

    def __call__(self, sigma: torch.Tensor) -> Scalings:
        c_noise = sigma.float().log() / 4.0
        sigma, sd = per_channel(sigma.float(), self.sigma_data)
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1.0 / (sd**2 + sigma**2).sqrt()
        return Scalings(c_skip, c_out, c_in, c_noise)


@PRECONDITIONINGS.register("svd")
class VScalingEDMNoise:
    """SVD's preconditioning (sgm `VScalingWithEDMcNoise`): EDM with sigma_data = 1 and v-prediction's sign.

    c_skip = 1/(s^2+1), c_out = -s/sqrt(s^2+1), c_in = 1/sqrt(s^2+1), c_noise = 0.25 ln s. With these, the
    network's ideal output is exactly SD's v target sqrt(abar) n - sqrt(1 - abar) x0 at abar = 1/(1+s^2).
    """

    def __call__(self, sigma: torch.Tensor) -> Scalings:
        sigma = sigma.float()
        c_skip = 1.0 / (sigma**2 + 1.0)
        c_out = -sigma / (sigma**2 + 1.0).sqrt()
        c_in = 1.0 / (sigma**2 + 1.0).sqrt()
        c_noise = 0.25 * sigma.log()
        return Scalings(c_skip, c_out, c_in, c_noise)


@PRECONDITIONINGS.register("discrete_v")
class DiscreteVPreconditioning:
    """SD 2.1's v-prediction in EDM form (the ablation proxies): V-scaling with c_noise = the discrete timestep.

    c_in x = x / sqrt(1+s^2) is exactly the variance-preserving sample x_t, so the network sees what SD 2.1
    saw; sigma is snapped to the nearest of the schedule's levels.
    """

    def __init__(self, num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012):
        self.schedule = DiscreteSchedule(num_timesteps, beta_start, beta_end)

    def __call__(self, sigma: torch.Tensor) -> Scalings:
        timesteps = self.schedule.timestep(sigma)
        sigma = self.schedule.sigma(timesteps)
        c_skip = 1.0 / (sigma**2 + 1.0)
        c_out = -sigma / (sigma**2 + 1.0).sqrt()
        c_in = 1.0 / (sigma**2 + 1.0).sqrt()
        return Scalings(c_skip, c_out, c_in, timesteps.float())


class Denoiser(nn.Module):
    """D(x, sigma, cond) = c_skip x + c_out F(c_in x, c_noise, **cond): the clean-sample estimate.

    x is (B*T, C, H, W) with each clip's frames contiguous; sigma is a scalar, one value per clip (spread over
    its frames) or one per frame. `cond` holds the network's keyword inputs (context, y, num_frames,
    image_only_indicator); a `concat` entry is joined to the scaled input on the channel axis unscaled
    (the image-to-video conditioning latent).
    """

    def __init__(self, network: nn.Module, preconditioning: Any):
        super().__init__()
        self.network = network
        self.preconditioning = preconditioning

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Mapping[str, Any] | None = None) -> torch.Tensor:
        sigma = expand_to_frames(torch.as_tensor(sigma, device=x.device, dtype=torch.float32), x.shape[0])
        c_skip, c_out, c_in, c_noise = self.preconditioning(sigma)
        x32 = x.float()
        network_input = (per_sample(c_in, x32) * x32).to(x.dtype)
        kwargs = dict(cond or {})
        concat = kwargs.pop("concat", None)
        if concat is not None:
            network_input = torch.cat([network_input, concat.to(network_input.dtype)], dim=1)
        network_output = self.network(network_input, c_noise, **kwargs)
        return per_sample(c_skip, x32) * x32 + per_sample(c_out, x32) * network_output.float()
