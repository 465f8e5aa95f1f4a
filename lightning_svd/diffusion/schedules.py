"""Noise-level schedules: SD 2.1's discrete schedule (the ablation proxies) and sampling discretizations.

Everything is expressed in the EDM "variance exploding" view x = x0 + sigma * n. A discrete timestep t of
a variance-preserving schedule with cumulative product abar_t is the noise level
sigma_t = sqrt((1 - abar_t) / abar_t), and its sample x_t = sqrt(abar_t) * (x0 + sigma_t * n).
"""

import torch

from lightning_svd.diffusion.registry import Registry
from lightning_svd.diffusion.tensors import per_sample

DISCRETIZATIONS = Registry("discretization")


class DiscreteSchedule:
    """SD 2.1's 1000-step "scaled linear" schedule: betas = linspace(sqrt(beta_start), sqrt(beta_end), N)^2.

    Tables are kept in float64 and cast on use; the index t runs 0 (least noise) .. N-1 (most noise).
    """

    def __init__(self, num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012):
        if num_timesteps < 2 or not 0.0 < beta_start < beta_end < 1.0:
            raise ValueError(
                f"discrete schedule needs num_timesteps >= 2 and 0 < beta_start < beta_end < 1, "
                f"got {num_timesteps}, {beta_start}, {beta_end}"
            )
        self.num_timesteps = num_timesteps
        self.betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        self.sigmas = ((1.0 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()

    def sigma(self, timesteps: torch.Tensor) -> torch.Tensor:
        """The equivalent EDM noise level of each integer timestep (float32, on the timesteps' device)."""
        return self.sigmas.to(timesteps.device)[timesteps.long()].float()

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The timestep whose noise level is nearest to sigma in log space (exact for table values)."""
        log_table = self.sigmas.to(sigma.device).log()
        log_sigma = sigma.double().log()
        above = torch.searchsorted(log_table, log_sigma).clamp(1, self.num_timesteps - 1)
        below = above - 1
        nearer_above = (log_table[above] - log_sigma).abs() < (log_sigma - log_table[below]).abs()
        return torch.where(nearer_above, above, below)

    def alpha_cumprod(self, timesteps: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod.to(timesteps.device)[timesteps.long()].float()

    def noisy(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """q(x_t | x0) = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, timesteps given per leading-dim sample."""
        abar = per_sample(self.alpha_cumprod(timesteps), x0)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def v_target(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The v-prediction target v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0 (Salimans & Ho 2022)."""
        abar = per_sample(self.alpha_cumprod(timesteps), x0)
        return abar.sqrt() * noise - (1.0 - abar).sqrt() * x0

    def sampling_timesteps(self, num_steps: int) -> torch.Tensor:
        """SD's "leading" DDIM spacing with offset 1 (where it fits), most noisy first: 981, 961, ..., 1 for 50."""
        if not 1 <= num_steps <= self.num_timesteps:
            raise ValueError(f"num_steps must be in [1, {self.num_timesteps}], got {num_steps}")
        timesteps = torch.arange(num_steps) * (self.num_timesteps // num_steps)
        if timesteps[-1] + 1 < self.num_timesteps:
            timesteps = timesteps + 1
        return timesteps.flip(0)


@DISCRETIZATIONS.register("karras")
class KarrasSigmas:
    """Karras et al. (2022) eq. 5: sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho, then 0.

    SVD samples with sigma_min 0.002, sigma_max 700, rho 7 (NVlabs/edm's default sigma_max is 80).
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0):
        if not 0.0 < sigma_min < sigma_max or rho <= 0.0:
            raise ValueError(
                f"karras sigmas need 0 < sigma_min < sigma_max and rho > 0, got {sigma_min}, {sigma_max}, {rho}"
            )
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max
        self.rho = rho

    def __call__(self, num_steps: int, device: torch.device | str | None = None) -> torch.Tensor:
        if num_steps < 2:
            raise ValueError(f"karras sigmas need num_steps >= 2, got {num_steps}")
        ramp = torch.arange(num_steps, dtype=torch.float64) / (num_steps - 1)
        max_inv_rho = self.sigma_max ** (1.0 / self.rho)
        min_inv_rho = self.sigma_min ** (1.0 / self.rho)
        sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** self.rho
        return append_zero(sigmas).float().to(device)


@DISCRETIZATIONS.register("discrete")
class DiscreteScheduleSigmas:
    """The noise levels of SD's DDIM timesteps (leading spacing) for a discrete schedule, then 0.

    SD's own DDIM stops at abar_0 (sigma about 0.029) and keeps that residual noise; ending on 0 returns
    the clean estimate of the last step instead, as the EDM discretizations do.
    """

    def __init__(self, num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012):
        self.schedule = DiscreteSchedule(num_timesteps, beta_start, beta_end)

    def __call__(self, num_steps: int, device: torch.device | str | None = None) -> torch.Tensor:
        timesteps = self.schedule.sampling_timesteps(num_steps)
        return append_zero(self.schedule.sigmas[timesteps]).float().to(device)


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])
