"""Samplers as plain functions of a denoise callable: `sample_*(denoise, x, sigmas, ...)`.

`denoise(x, sigma)` returns the clean estimate D(x; sigma) for rows x at per-row noise levels sigma; bind
the conditioning and guidance with `lightning_svd.diffusion.guidance.guided`. `sigmas` is a descending
discretization ending in 0 (see `schedules`). Everything happens in the EDM view x = x0 + sigma n, so the
same samplers serve every preconditioning, including SD 2.1's discrete v-prediction. Where a sampler draws
fresh noise (churn, eta > 0), an optional `noise(x)` draws it from the model's frame-noise prior.
"""

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from lightning_svd.diffusion.noise import frame_noise
from lightning_svd.diffusion.registry import Registry

SAMPLERS = Registry("sampler")

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFn = Callable[[torch.Tensor], torch.Tensor]


def initial_noise(
    shape: tuple[int, ...],
    sigma_max: float,
    data_std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    num_frames: int = 1,
    shared_frame_noise: float = 0.0,
) -> torch.Tensor:
    """The starting sample n * sqrt(data_std^2 + sigma_max^2): the std of x0 + sigma_max n, with n drawn from
    the frame-noise prior the model trained on (`noise.frame_noise`; independent frames by default).

    SVD (sgm) uses data_std = 1, i.e. sqrt(1 + sigma_max^2), matching its V-scaled denoiser's sigma_data = 1;
    with SD's discrete schedule this is exactly the N(0, I) start of DDIM in variance-preserving units.
    NVlabs/edm and k-diffusion use plain sigma_max (data_std = 0); at sigma_max = 700 the two agree to 1e-6.
    """
    noise = frame_noise(shape, num_frames, shared_frame_noise, generator, device, dtype)
    return noise * math.sqrt(data_std**2 + sigma_max**2)


def _fresh_noise(x: torch.Tensor, generator: torch.Generator | None, noise: NoiseFn | None) -> torch.Tensor:
    """`noise(x)` if given (e.g. the model's frame-noise prior), else independent N(0, 1) shaped like x."""
    if noise is not None:
        return noise(x)
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


@SAMPLERS.register("euler")
def sample_euler(
    denoise: DenoiseFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    noise: NoiseFn | None = None,
    disable: bool = False,
) -> torch.Tensor:
    """Euler steps on the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma, with optional churn."""
    return _edm_sampler(denoise, x, sigmas, s_churn, s_tmin, s_tmax, s_noise, generator, noise, disable, heun=False)


@SAMPLERS.register("heun")
def sample_heun(
    denoise: DenoiseFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    noise: NoiseFn | None = None,
    disable: bool = False,
) -> torch.Tensor:
    """EDM Algorithm 2: Euler plus Heun's second-order correction on every step except the one to sigma = 0."""
    return _edm_sampler(denoise, x, sigmas, s_churn, s_tmin, s_tmax, s_noise, generator, noise, disable, heun=True)


def _edm_sampler(
    denoise: DenoiseFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
    generator: torch.Generator | None,
    noise: NoiseFn | None,
    disable: bool,
    heun: bool,
) -> torch.Tensor:
    """Karras et al. (2022) Algorithm 2; churn: gamma = min(s_churn / N, sqrt(2) - 1) for s_tmin <= sigma <= s_tmax."""
    num_steps = len(sigmas) - 1
    rows = x.new_ones(x.shape[0])
    for i in tqdm(range(num_steps), disable=disable, desc="sampling"):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        gamma = min(s_churn / num_steps, math.sqrt(2.0) - 1.0) if s_tmin <= sigma <= s_tmax else 0.0
        sigma_hat = sigma * (1.0 + gamma)
        if gamma > 0.0:
            x = x + _fresh_noise(x, generator, noise) * s_noise * math.sqrt(sigma_hat**2 - sigma**2)
        slope = (x - denoise(x, sigma_hat * rows)) / sigma_hat
        step = sigma_next - sigma_hat
        if heun and sigma_next > 0.0:
            x_euler = x + slope * step
            slope_next = (x_euler - denoise(x_euler, sigma_next * rows)) / sigma_next
            x = x + (slope + slope_next) / 2.0 * step
        else:
            x = x + slope * step
    return x


@SAMPLERS.register("ddim")
def sample_ddim(
    denoise: DenoiseFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    noise: NoiseFn | None = None,
    disable: bool = False,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) in sigma units; eta = 0 is deterministic, eta = 1 is ancestral DDPM.

    Dividing DDIM's variance-preserving update by sqrt(abar_next) gives
    x_next = D + sqrt(s_next^2 - s_up^2) (x - D)/s + s_up z with s_up = eta s_next sqrt(s^2 - s_next^2)/s,
    so with the discrete schedule's sigmas and the `discrete_v` preconditioning this is SD 2.1's DDIM.
    """
    rows = x.new_ones(x.shape[0])
    for i in tqdm(range(len(sigmas) - 1), disable=disable, desc="sampling"):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, sigma * rows)
        if sigma_next == 0.0:
            x = denoised
            continue
        sigma_up = min(sigma_next, eta * sigma_next * math.sqrt(max(sigma**2 - sigma_next**2, 0.0)) / sigma)
        sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
        x = denoised + sigma_down * (x - denoised) / sigma
        if sigma_up > 0.0:
            x = x + sigma_up * _fresh_noise(x, generator, noise)
    return x
