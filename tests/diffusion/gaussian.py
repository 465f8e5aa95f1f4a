"""A Gaussian data distribution N(mu, s0^2) whose exact denoiser and exact v-prediction are known in closed form."""

import torch

from lightning_svd.diffusion import DiscreteSchedule


class GaussianData:
    """Per-coordinate data x0 ~ N(mu, s0^2); noised x = x0 + sigma n has posterior mean E[x0 | x] in closed form."""

    def __init__(self, mu: float, s0: float):
        self.mu = mu
        self.s0 = s0

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """D(x, sigma) = mu + s0^2 / (s0^2 + sigma^2) (x - mu), the minimum-MSE denoiser."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return self.mu + self.s0**2 / (self.s0**2 + sigma**2) * (x - self.mu)

    def v_prediction(self, x_t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        """E[v | x_t] for x_t = sqrt(a) x0 + sqrt(1-a) n and v = sqrt(a) n - sqrt(1-a) x0."""
        a = alpha_bar.to(x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))
        variance = a * self.s0**2 + 1.0 - a
        centred = x_t - a.sqrt() * self.mu
        expected_x0 = self.mu + self.s0**2 * a.sqrt() / variance * centred
        expected_noise = (1.0 - a).sqrt() / variance * centred
        return a.sqrt() * expected_noise - (1.0 - a).sqrt() * expected_x0

    def exact_v_network(self, schedule: DiscreteSchedule):
        """A stand-in network F(x_t, t) for the `discrete_v` preconditioning: the exact v-prediction."""

        def network(x_t: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
            return self.v_prediction(x_t.double(), schedule.alpha_cumprod(c_noise.long()).double())

        return network
