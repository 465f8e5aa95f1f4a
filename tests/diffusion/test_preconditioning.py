"""Preconditioning formulas against literal float64 transcriptions, and the denoiser built from them."""

import math

import pytest
import torch
from torch import nn

from lightning_svd.diffusion import (
    Denoiser,
    DiscreteSchedule,
    DiscreteVPreconditioning,
    EDMPreconditioning,
    VScalingEDMNoise,
)

from .gaussian import GaussianData

SIGMAS = [0.002, 0.03, 0.5, 1.0, 2.7, 80.0, 700.0]


@pytest.mark.parametrize("sigma_data", [0.5, 1.0, 1.3])
def test_edm_scalings_match_the_paper_table(sigma_data):
    scalings = EDMPreconditioning(sigma_data)(torch.tensor(SIGMAS))
    for i, s in enumerate(SIGMAS):
        sd = sigma_data
        expected = (
            sd**2 / (s**2 + sd**2),
            s * sd / math.sqrt(s**2 + sd**2),
            1.0 / math.sqrt(sd**2 + s**2),
            math.log(s) / 4.0,
        )
        for value, reference in zip(scalings, expected):
            assert value.dtype == torch.float32
            assert value[i].item() == pytest.approx(reference, rel=1e-6, abs=1e-7)


def test_svd_v_scaling_matches_the_released_formulas():
    scalings = VScalingEDMNoise()(torch.tensor(SIGMAS, dtype=torch.float64))
    for i, s in enumerate(SIGMAS):
        expected = (1.0 / (s**2 + 1.0), -s / math.sqrt(s**2 + 1.0), 1.0 / math.sqrt(s**2 + 1.0), 0.25 * math.log(s))
        for value, reference in zip(scalings, expected):
            assert value.dtype == torch.float32
            assert value[i].item() == pytest.approx(reference, rel=1e-6, abs=1e-7)


def test_svd_v_scaling_is_edm_with_unit_sigma_data_and_negated_output():
    sigma = torch.tensor(SIGMAS)
    v_scaling, edm = VScalingEDMNoise()(sigma), EDMPreconditioning(1.0)(sigma)
    torch.testing.assert_close(v_scaling.c_skip, edm.c_skip)
    torch.testing.assert_close(v_scaling.c_out, -edm.c_out)
    torch.testing.assert_close(v_scaling.c_in, edm.c_in)
    torch.testing.assert_close(v_scaling.c_noise, edm.c_noise)


def test_v_scaled_denoiser_with_the_optimal_network_is_the_posterior_mean():
    """F* = E[v | x] (SD's v target) plugged into D = c_skip x + c_out F* gives E[x0 | x] exactly."""
    data = GaussianData(mu=0.3, s0=0.8)

    def optimal_v_network(network_input, c_noise):
        sigma = torch.exp(4.0 * c_noise.double()).reshape(-1, 1)
        return data.v_prediction(network_input.double(), 1.0 / (1.0 + sigma**2))

    denoiser = Denoiser(optimal_v_network, VScalingEDMNoise())
    sigma = torch.tensor(SIGMAS[:-1], dtype=torch.float64).repeat_interleave(64)
    x = torch.randn(sigma.numel(), 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3.0
    torch.testing.assert_close(denoiser(x, sigma).double(), data.denoise(x, sigma), rtol=1e-5, atol=1e-5)


def test_v_error_equals_v_weighted_clean_error():
    """||F - v||^2 = (s^2+1)/s^2 ||D - x0||^2: v-prediction loss is SVD's weighted denoising loss."""
    generator = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(2, 16, 4, generator=generator, dtype=torch.float64)
    for s in SIGMAS:
        a = 1.0 / (1.0 + s**2)
        v_target = math.sqrt(a) * noise - math.sqrt(1.0 - a) * x0
        network_output = torch.randn(16, 4, generator=generator, dtype=torch.float64)
        c_skip, c_out, _, _ = VScalingEDMNoise()(torch.tensor(s))
        denoised = c_skip.double() * (x0 + s * noise) + c_out.double() * network_output
        v_error = ((network_output - v_target) ** 2).sum()
        weighted_clean_error = (s**2 + 1.0) / s**2 * ((denoised - x0) ** 2).sum()
        assert v_error.item() == pytest.approx(weighted_clean_error.item(), rel=1e-5)


def test_discrete_v_preconditioning_feeds_the_variance_preserving_sample_and_timestep():
    schedule = DiscreteSchedule()
    timesteps = torch.tensor([0, 1, 17, 500, 981, 999])
    sigma = schedule.sigma(timesteps)
    generator = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(2, 6, 3, 4, 4, generator=generator)
    c_skip, c_out, c_in, c_noise = DiscreteVPreconditioning()(sigma)
    torch.testing.assert_close(c_noise, timesteps.float())
    network_input = c_in.reshape(-1, 1, 1, 1) * (x0 + sigma.reshape(-1, 1, 1, 1) * noise)
    torch.testing.assert_close(network_input, schedule.noisy(x0, noise, timesteps), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_skip, 1.0 / (sigma**2 + 1.0))
    torch.testing.assert_close(c_out, -sigma / (sigma**2 + 1.0).sqrt())


class RecordingNetwork(nn.Module):
    """Returns its input's first channels times 2 and keeps what it was called with."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.out_channels = out_channels
        self.calls = []

    def forward(self, x, c_noise, **kwargs):
        self.calls.append((x, c_noise, kwargs))
        return 2.0 * x[:, : self.out_channels]


def test_denoiser_spreads_one_sigma_per_clip_over_its_frames():
    network = RecordingNetwork(out_channels=3)
    denoiser = Denoiser(network, VScalingEDMNoise())
    x = torch.randn(2 * 5, 3, 4, 4)
    sigma_per_clip = torch.tensor([0.5, 3.0])
    denoised = denoiser(x, sigma_per_clip, {"num_frames": 5})
    _, c_noise, kwargs = network.calls[-1]
    torch.testing.assert_close(c_noise, 0.25 * sigma_per_clip.log().repeat_interleave(5))
    assert kwargs == {"num_frames": 5}
    per_frame = denoiser(x, sigma_per_clip.repeat_interleave(5), {"num_frames": 5})
    torch.testing.assert_close(denoised, per_frame)
    s = sigma_per_clip.repeat_interleave(5).reshape(-1, 1, 1, 1)
    expected = x / (s**2 + 1) - s / (s**2 + 1).sqrt() * 2.0 * x / (s**2 + 1).sqrt()
    torch.testing.assert_close(denoised, expected)
    torch.testing.assert_close(denoiser(x, torch.tensor(0.7)), denoiser(x, torch.full((10,), 0.7)))
    with pytest.raises(ValueError, match="one per clip or one per frame"):
        denoiser(x, torch.ones(3))


def test_denoiser_joins_the_concat_latent_unscaled_and_passes_the_rest():
    network = RecordingNetwork(out_channels=4)
    denoiser = Denoiser(network, VScalingEDMNoise())
    x, concat, context = torch.randn(6, 4, 8, 8), torch.randn(6, 4, 8, 8), torch.randn(6, 1, 16)
    denoiser(x, torch.tensor([10.0, 10.0]), {"concat": concat, "context": context, "num_frames": 3})
    network_input, _, kwargs = network.calls[-1]
    assert network_input.shape == (6, 8, 8, 8)
    torch.testing.assert_close(network_input[:, :4], x / math.sqrt(101.0))
    torch.testing.assert_close(network_input[:, 4:], concat)
    assert set(kwargs) == {"context", "num_frames"} and kwargs["context"] is context


def test_denoiser_scalings_stay_float32_around_a_low_precision_network():
    network = RecordingNetwork(out_channels=2).to(torch.bfloat16)
    denoiser = Denoiser(network, VScalingEDMNoise())
    x = torch.randn(4, 2, 3, 3).to(torch.bfloat16)
    denoised = denoiser(x, torch.full((4,), 700.0))
    network_input, c_noise, _ = network.calls[-1]
    assert network_input.dtype == torch.bfloat16 and c_noise.dtype == torch.float32
    assert denoised.dtype == torch.float32
    s = 700.0
    expected = x.float() / (s**2 + 1) - s / math.sqrt(s**2 + 1) * 2.0 * network_input.float()
    torch.testing.assert_close(denoised, expected)


def test_per_channel_sigma_data_scales_each_channel_by_its_own_formulas():
    """A per-channel sigma_data gives every channel the scalar formulas with its own value (c_noise stays one per
    row), the denoiser applies them channel by channel, and the EDM weight is per channel too."""
    from lightning_svd.diffusion.loss import EDMWeighting

    per_channel = [1.4, 0.2, 0.05]
    sigmas = torch.tensor([0.1, 0.7, 3.0])
    scalings = EDMPreconditioning(per_channel)(sigmas)
    for channel, sd in enumerate(per_channel):
        single = EDMPreconditioning(sd)(sigmas)
        for joint, alone in zip(scalings[:3], single[:3], strict=True):
            torch.testing.assert_close(joint[:, channel], alone)
        torch.testing.assert_close(EDMWeighting(per_channel)(sigmas)[:, channel], EDMWeighting(sd)(sigmas))
    torch.testing.assert_close(scalings.c_noise, sigmas.log() / 4)
    x = torch.randn(3, 3, 2, 2)
    denoised = Denoiser(lambda inputs, c_noise: torch.zeros_like(inputs), EDMPreconditioning(per_channel))(x, sigmas)
    expected = torch.stack([EDMPreconditioning(sd)(sigmas).c_skip for sd in per_channel], dim=1)[..., None, None] * x
    torch.testing.assert_close(denoised, expected)
    with pytest.raises(ValueError, match="sigma_data must be a positive"):
        EDMPreconditioning([0.5, 0.0])


def test_per_level_sigma_data_spreads_over_the_wavelet_stand_ins_channels():
    from lightning_svd.stages.base import per_channel_data_std
    from lightning_svd.stages.components import SpaceToDepthAutoencoder

    haar = SpaceToDepthAutoencoder(4, basis="haar")
    spec = per_channel_data_std({"preconditioning": {"name": "edm", "sigma_data": [1.0, 0.2, 0.1]}}, haar)
    values = spec["preconditioning"]["sigma_data"]
    assert len(values) == 48 and sorted(set(values)) == [0.1, 0.2, 1.0]
    assert values.count(1.0) == 3 and values.count(0.2) == 9
    with pytest.raises(ValueError, match="basis haar"):
        per_channel_data_std({"weighting": {"name": "edm", "sigma_data": [1.0, 0.2]}},
                             SpaceToDepthAutoencoder(2, basis="pixels"))
