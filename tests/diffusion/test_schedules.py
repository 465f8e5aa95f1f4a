"""SD 2.1's discrete schedule and the Karras discretization against literal transcriptions."""

import math

import numpy as np
import pytest
import torch

from lightning_svd.diffusion import DiscreteSchedule, DiscreteScheduleSigmas, KarrasSigmas


def test_scaled_linear_betas_and_alphas_cumprod():
    schedule = DiscreteSchedule()
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    np.testing.assert_allclose(schedule.betas.numpy(), betas, rtol=1e-12)
    np.testing.assert_allclose(schedule.alphas_cumprod.numpy(), alphas_cumprod, rtol=1e-12)
    assert schedule.betas[0].item() == pytest.approx(0.00085) and schedule.betas[-1].item() == pytest.approx(0.012)
    # The largest level keeps about 0.47 % of the signal variance: SD 2.1's "SNR too high at t = T" problem.
    assert schedule.alphas_cumprod[-1].item() == pytest.approx(0.00466, abs=1e-5)


def test_timesteps_and_sigmas_convert_both_ways():
    schedule = DiscreteSchedule()
    timesteps = torch.arange(1000)
    sigmas = schedule.sigma(timesteps)
    expected = np.sqrt((1.0 - schedule.alphas_cumprod.numpy()) / schedule.alphas_cumprod.numpy())
    np.testing.assert_allclose(sigmas.numpy(), expected, rtol=1e-6)
    assert bool((sigmas[1:] > sigmas[:-1]).all())
    assert torch.equal(schedule.timestep(sigmas), timesteps)
    between = (sigmas[400] * sigmas[401]).sqrt()
    nudged = torch.stack([between * 0.999, between * 1.001, sigmas[0] / 10, sigmas[-1] * 10])
    assert schedule.timestep(nudged).tolist() == [400, 401, 0, 999]


def test_v_target_and_noisy_sample_literal():
    schedule = DiscreteSchedule()
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 2, 5, generator=generator, dtype=torch.float64)
    timesteps = torch.tensor([0, 250, 999])
    v = schedule.v_target(x0, noise, timesteps)
    x_t = schedule.noisy(x0, noise, timesteps)
    for i, t in enumerate(timesteps.tolist()):
        a = float(np.cumprod(1.0 - np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2)[t])
        torch.testing.assert_close(v[i], math.sqrt(a) * noise[i] - math.sqrt(1 - a) * x0[i], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(x_t[i], math.sqrt(a) * x0[i] + math.sqrt(1 - a) * noise[i], rtol=1e-6, atol=1e-6)


def test_ddim_timesteps_use_sd_leading_spacing():
    schedule = DiscreteSchedule()
    assert schedule.sampling_timesteps(50).tolist() == list(range(981, 0, -20))
    assert schedule.sampling_timesteps(3).tolist() == [667, 334, 1]
    assert schedule.sampling_timesteps(1000).tolist() == list(range(999, -1, -1))
    with pytest.raises(ValueError, match="num_steps"):
        schedule.sampling_timesteps(0)


def test_discrete_sampling_sigmas_are_the_timesteps_levels_then_zero():
    schedule = DiscreteSchedule()
    sigmas = DiscreteScheduleSigmas()(50)
    torch.testing.assert_close(sigmas[:-1], schedule.sigma(schedule.sampling_timesteps(50)))
    assert sigmas[-1].item() == 0.0 and len(sigmas) == 51


@pytest.mark.parametrize("sigma_max", [80.0, 700.0])
def test_karras_sigmas_endpoints_monotonic_and_rho_spacing(sigma_max):
    num_steps, rho = 25, 7.0
    sigmas = KarrasSigmas(sigma_min=0.002, sigma_max=sigma_max, rho=rho)(num_steps).double()
    assert len(sigmas) == num_steps + 1 and sigmas[-1].item() == 0.0
    assert sigmas[0].item() == pytest.approx(sigma_max, rel=1e-6)
    assert sigmas[-2].item() == pytest.approx(0.002, rel=1e-5)
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    steps_in_root_space = torch.diff(sigmas[:-1] ** (1.0 / rho))
    torch.testing.assert_close(steps_in_root_space, steps_in_root_space.mean().expand(num_steps - 1), rtol=1e-4, atol=0)
    i = 10
    literal = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (0.002 ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    assert sigmas[i].item() == pytest.approx(literal, rel=1e-6)


def test_bad_discretization_parameters_are_rejected():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        KarrasSigmas(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="num_steps >= 2"):
        KarrasSigmas()(1)
    with pytest.raises(ValueError, match="beta_start < beta_end"):
        DiscreteSchedule(beta_start=0.02, beta_end=0.01)
