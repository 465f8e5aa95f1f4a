"""Samplers on Gaussian data N(mu, s0^2), whose exact denoiser is known, land on the right mean and variance.

Each test draws 1024 x 32 = 32768 values, so the standard error of the mean is s0 / 181 and that of the
standard deviation about 0.4 %; the step counts are chosen so discretization error stays below ~1.5 %.
"""

import math

import pytest
import torch

from lightning_svd.diffusion import (
    Denoiser,
    DiscreteSchedule,
    DiscreteScheduleSigmas,
    DiscreteVPreconditioning,
    KarrasSigmas,
    initial_noise,
    sample_ddim,
    sample_euler,
    sample_heun,
)

from .gaussian import GaussianData

SHAPE = (1024, 32)


def assert_gaussian(samples: torch.Tensor, data: GaussianData, std_tolerance: float) -> None:
    mean_tolerance = 5 * data.s0 / math.sqrt(samples.numel())
    assert samples.mean().item() == pytest.approx(data.mu, abs=mean_tolerance)
    assert samples.std().item() == pytest.approx(data.s0, rel=std_tolerance)


@pytest.mark.parametrize(
    ("sampler", "num_steps", "churn", "std_tolerance"),
    [
        (sample_euler, 256, {}, 0.03),
        (sample_heun, 64, {}, 0.025),
        (sample_euler, 1024, {"s_churn": 80.0, "s_tmin": 0.05, "s_tmax": 50.0}, 0.04),
        (sample_heun, 64, {"s_churn": 30.0, "s_tmin": 0.05, "s_tmax": 50.0}, 0.04),
    ],
    ids=["euler", "heun", "euler-churn", "heun-churn"],
)
def test_edm_samplers_reach_the_data_distribution(sampler, num_steps, churn, std_tolerance):
    data = GaussianData(mu=0.7, s0=0.5)
    generator = torch.Generator().manual_seed(0)
    sigmas = KarrasSigmas(sigma_min=0.002, sigma_max=80.0)(num_steps).double()
    x = data.mu + initial_noise(SHAPE, float(sigmas[0]), data_std=data.s0, generator=generator, dtype=torch.float64)
    samples = sampler(data.denoise, x, sigmas, generator=generator, disable=True, **churn)
    assert_gaussian(samples, data, std_tolerance)


def test_churn_noise_level_matters():
    """Too much churn noise (s_noise 1.2) visibly widens the result: the variance check can fail."""
    data = GaussianData(mu=0.7, s0=0.5)
    generator = torch.Generator().manual_seed(1)
    sigmas = KarrasSigmas(sigma_min=0.002, sigma_max=80.0)(64).double()
    x = data.mu + initial_noise(SHAPE, 80.0, data_std=data.s0, generator=generator, dtype=torch.float64)
    samples = sample_heun(
        data.denoise, x, sigmas, s_churn=30.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.2, generator=generator, disable=True
    )
    assert samples.std().item() > 1.15 * data.s0


def test_svd_sampling_setup_with_v_scaled_initial_noise():
    """Unit-variance data, Karras(0.002, 700), x_T = randn * sqrt(1 + 700^2): SVD's released setup."""
    data = GaussianData(mu=-0.4, s0=1.0)
    generator = torch.Generator().manual_seed(2)
    sigmas = KarrasSigmas(sigma_min=0.002, sigma_max=700.0)(64).double()
    x = initial_noise(SHAPE, 700.0, generator=generator, dtype=torch.float64)
    assert x.std().item() == pytest.approx(math.sqrt(1 + 700.0**2), rel=0.02)
    samples = sample_heun(data.denoise, x, sigmas, disable=True)
    assert_gaussian(samples, data, 0.025)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_exact_v_prediction_reaches_the_data_distribution(eta):
    data = GaussianData(mu=0.7, s0=1.0)
    denoiser = Denoiser(data.exact_v_network(DiscreteSchedule()), DiscreteVPreconditioning())
    generator = torch.Generator().manual_seed(3)
    sigmas = DiscreteScheduleSigmas()(250).double()
    x = data.mu + initial_noise(SHAPE, float(sigmas[0]), data_std=data.s0, generator=generator, dtype=torch.float64)
    samples = sample_ddim(lambda x, s: denoiser(x, s).double(), x, sigmas, eta=eta, generator=generator, disable=True)
    assert_gaussian(samples, data, 0.035)


def literal_ddim(v_model, x_t, schedule, timesteps, eta, generator):
    """Song et al. (2021) eq. 12 in variance-preserving units with a v-model, SD's way (ends at abar_0)."""
    alphas = schedule.alphas_cumprod
    previous = torch.cat([timesteps[1:], torch.tensor([0])])
    for t, t_prev in zip(timesteps.tolist(), previous.tolist()):
        a, a_prev = alphas[t], alphas[t_prev]
        v = v_model(x_t, torch.full((x_t.shape[0],), t))
        x0_hat = a.sqrt() * x_t - (1 - a).sqrt() * v
        eps_hat = (1 - a).sqrt() * x_t + a.sqrt() * v
        sigma_eta = eta * ((1 - a_prev) / (1 - a)).sqrt() * (1 - a / a_prev).sqrt()
        x_t = a_prev.sqrt() * x0_hat + (1 - a_prev - sigma_eta**2).sqrt() * eps_hat
        if eta > 0:
            x_t = x_t + sigma_eta * torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype)
    return x_t


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_in_sigma_units_is_sd_ddim_step_for_step(eta):
    schedule = DiscreteSchedule()
    data = GaussianData(mu=0.3, s0=0.8)

    def v_model(x_t, t):
        return data.v_prediction(x_t, schedule.alphas_cumprod[t])

    timesteps = schedule.sampling_timesteps(20)
    x_start = torch.randn(64, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    expected = literal_ddim(v_model, x_start, schedule, timesteps, eta, torch.Generator().manual_seed(5))

    denoiser = Denoiser(data.exact_v_network(schedule), DiscreteVPreconditioning())
    sigmas = torch.cat([schedule.sigmas[timesteps], schedule.sigmas[:1]])
    x = x_start * (1 + sigmas[0] ** 2).sqrt()
    result = sample_ddim(
        lambda x, s: denoiser(x, s).double(),
        x,
        sigmas,
        eta=eta,
        generator=torch.Generator().manual_seed(5),
        disable=True,
    )
    torch.testing.assert_close(result * schedule.alphas_cumprod[0].sqrt(), expected, rtol=1e-5, atol=1e-5)


def test_deterministic_ddim_is_euler_in_sigma_units():
    data = GaussianData(mu=0.3, s0=0.8)
    sigmas = DiscreteScheduleSigmas()(30).double()
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 10.0
    torch.testing.assert_close(
        sample_ddim(data.denoise, x, sigmas, disable=True), sample_euler(data.denoise, x, sigmas, disable=True)
    )
