"""Noise levels per clip, offset noise per clip, frame-shared noise, loss weights, and the denoising loss (EDM and
the v proxy)."""

import math

import pytest
import torch
from torch import nn

from lightning_svd.diffusion import (
    Denoiser,
    DenoisingLoss,
    DiscreteSchedule,
    DiscreteTimestepSigmas,
    DiscreteVPreconditioning,
    EDMWeighting,
    LogNormalSigmas,
    MinSNRWeighting,
    UnitWeighting,
    VScalingEDMNoise,
    VWeighting,
    frame_noise,
    training_noise,
)


def test_log_normal_sigma_is_shared_by_the_frames_of_each_clip():
    sigmas = LogNormalSigmas(p_mean=0.7, p_std=1.6)(4000, num_frames=5, generator=torch.Generator().manual_seed(0))
    per_clip = sigmas.reshape(4000, 5)
    assert torch.equal(per_clip, per_clip[:, :1].expand(-1, 5))
    log_sigma = per_clip[:, 0].log()
    assert log_sigma.mean().item() == pytest.approx(0.7, abs=4 * 1.6 / math.sqrt(4000))
    assert log_sigma.std().item() == pytest.approx(1.6, rel=0.05)
    assert per_clip[:, 0].unique().numel() == 4000


def test_discrete_sigmas_are_table_levels_uniform_over_timesteps_and_shared_per_clip():
    distribution = DiscreteTimestepSigmas()
    sigmas = distribution(6000, num_frames=3, generator=torch.Generator().manual_seed(1)).reshape(6000, 3)
    assert torch.equal(sigmas, sigmas[:, :1].expand(-1, 3))
    schedule = DiscreteSchedule()
    timesteps = schedule.timestep(sigmas[:, 0])
    torch.testing.assert_close(schedule.sigma(timesteps), sigmas[:, 0])
    assert timesteps.float().mean().item() == pytest.approx(499.5, abs=4 * 288.7 / math.sqrt(6000))
    assert timesteps.min().item() < 10 and timesteps.max().item() > 990


def test_offset_noise_is_one_constant_per_clip_and_channel_shared_across_frames():
    clips, frames, channels = 64, 4, 3
    like = torch.zeros(clips * frames, channels, 32, 32)
    noise = training_noise(like, frames, offset_noise=3.0, generator=torch.Generator().manual_seed(2))
    frame_means = noise.mean(dim=(2, 3)).reshape(clips, frames, channels)
    # The spatial mean of 32x32 unit noise has std 1/32; the offset (std 3) is equal across a clip's frames.
    assert (frame_means - frame_means.mean(dim=1, keepdim=True)).abs().max().item() < 6 / 32
    assert frame_means[:, 0].std().item() == pytest.approx(3.0, rel=0.2)
    plain = training_noise(like, frames, generator=torch.Generator().manual_seed(2))
    assert plain.mean(dim=(2, 3)).abs().max().item() < 6 / 32
    assert plain.std().item() == pytest.approx(1.0, rel=0.02)
    with pytest.raises(ValueError, match="whole number"):
        training_noise(torch.zeros(7, 3, 4, 4), num_frames=2, offset_noise=0.1)


def frame_correlations(noise: torch.Tensor, num_frames: int) -> tuple[float, float]:
    """(correlation of two frames of one clip, correlation of the first frames of two clips)."""
    clips = noise.unflatten(0, (-1, num_frames)).flatten(2)
    same_clip = (clips[:, 0] * clips[:, 1]).mean().item()
    other_clip = (clips[:-1, 0] * clips[1:, 0]).mean().item()
    return same_clip, other_clip


@pytest.mark.parametrize("shared", [0.0, 0.5, 0.95])
def test_frame_noise_stays_unit_normal_with_the_given_share_common_to_a_clips_frames(shared):
    noise = frame_noise((64 * 4, 3, 16, 16), num_frames=4, shared=shared, generator=torch.Generator().manual_seed(3))
    assert noise.std().item() == pytest.approx(1.0, rel=0.02)
    same_clip, other_clip = frame_correlations(noise, 4)
    assert same_clip == pytest.approx(shared, abs=0.03)
    assert other_clip == pytest.approx(0.0, abs=0.03)


def test_unshared_frame_noise_is_the_plain_draw_so_seeds_keep_their_samples():
    plain = torch.randn((8, 3, 4, 4), generator=torch.Generator().manual_seed(4))
    assert torch.equal(frame_noise((8, 3, 4, 4), 4, 0.0, torch.Generator().manual_seed(4)), plain)
    with pytest.raises(ValueError, match=r"shared frame noise must be in \[0, 1\), got 1.0"):
        frame_noise((8, 3, 4, 4), 4, 1.0)
    with pytest.raises(ValueError, match="whole number"):
        frame_noise((7, 3, 4, 4), 2, 0.5)


def test_denoising_loss_noises_clips_with_its_shared_frame_noise():
    seen = []

    def denoise(x_noisy, sigma):
        seen.append(x_noisy / sigma[:, None, None, None])
        return torch.zeros_like(x_noisy)

    x0 = torch.zeros(64 * 4, 3, 16, 16)
    loss = DenoisingLoss(LogNormalSigmas(), UnitWeighting(), shared_frame_noise=0.8)
    loss(denoise, x0, num_frames=4, generator=torch.Generator().manual_seed(5))
    same_clip, other_clip = frame_correlations(seen[0], 4)
    assert same_clip == pytest.approx(0.8, abs=0.03)
    assert other_clip == pytest.approx(0.0, abs=0.03)


def test_loss_weights_literal():
    sigma = torch.tensor([0.002, 0.3, 1.0, 5.0, 700.0], dtype=torch.float64)
    for i, s in enumerate(sigma.tolist()):
        assert EDMWeighting(0.5)(sigma)[i].item() == pytest.approx((s**2 + 0.25) / (s * 0.5) ** 2, rel=1e-12)
        assert VWeighting()(sigma)[i].item() == pytest.approx((s**2 + 1.0) / s**2, rel=1e-12)
        assert UnitWeighting()(sigma)[i].item() == 1.0
        assert MinSNRWeighting(gamma=5.0)(sigma)[i].item() == pytest.approx(min(1.0 / s**2, 5.0), rel=1e-12)
        assert MinSNRWeighting(gamma=5.0, sigma_data=0.5)(sigma)[i].item() == pytest.approx(
            min(0.25 / s**2, 5.0), rel=1e-12
        )


def test_denoising_loss_per_clip_is_the_weighted_clip_mean_squared_error():
    clips, frames = 3, 4
    x0 = torch.randn(clips * frames, 2, 5, 5, generator=torch.Generator().manual_seed(3))
    seen_sigmas = []

    def predict_zero(x_noisy, sigma):
        seen_sigmas.append(sigma)
        return torch.zeros_like(x_noisy)

    loss = DenoisingLoss(LogNormalSigmas(0.0, 1.0), VWeighting())
    output = loss(predict_zero, x0, num_frames=frames, generator=torch.Generator().manual_seed(4))
    assert output.per_clip.shape == (clips,) and output.sigmas.shape == (clips,)
    torch.testing.assert_close(seen_sigmas[0], output.sigmas.repeat_interleave(frames))
    clip_mse = (x0**2).reshape(clips, -1).mean(dim=1)
    torch.testing.assert_close(output.per_clip, (output.sigmas**2 + 1) / output.sigmas**2 * clip_mse)
    torch.testing.assert_close(output.loss, output.per_clip.mean())

    def oracle(x_noisy, sigma):
        return x0

    assert loss(oracle, x0, num_frames=frames).loss.item() == 0.0


class RecordingNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(0.3))
        self.calls = []

    def forward(self, x, c_noise, **kwargs):
        output = self.weight * x + 0.01 * c_noise.reshape(-1, 1, 1, 1)
        self.calls.append((x.detach(), c_noise, output.detach()))
        return output


def test_proxy_loss_equals_the_literal_v_prediction_mse():
    """discrete sigma + discrete_v preconditioning + V weighting = SD 2.1's ||F(x_t, t) - v||^2, offset noise too."""
    clips, frames = 4, 3
    schedule = DiscreteSchedule()
    x0 = torch.randn(clips * frames, 3, 6, 6, generator=torch.Generator().manual_seed(5))
    network = RecordingNetwork()
    denoiser = Denoiser(network, DiscreteVPreconditioning())
    loss = DenoisingLoss(DiscreteTimestepSigmas(), VWeighting(), offset_noise=0.1)
    output = loss(denoiser, x0, num_frames=frames, generator=torch.Generator().manual_seed(6))
    x_t, c_noise, network_output = network.calls[-1]
    timesteps = c_noise.long()
    a = schedule.alpha_cumprod(timesteps).reshape(-1, 1, 1, 1)
    noise = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
    v_target = schedule.v_target(x0, noise, timesteps)
    literal = ((network_output - v_target) ** 2).reshape(clips, -1).mean(dim=1)
    torch.testing.assert_close(output.per_clip, literal, rtol=2e-4, atol=1e-6)
    torch.testing.assert_close(output.sigmas, schedule.sigma(timesteps[::frames]))
    output.loss.backward()
    assert network.weight.grad is not None and network.weight.grad.abs().item() > 0


def test_svd_loss_equals_unit_weighted_error_on_the_network_output():
    """With V-scaling and V weighting, the loss is ||F - v||^2 for continuous sigma too (SVD's training loss)."""
    x0 = torch.randn(8, 2, 4, 4, generator=torch.Generator().manual_seed(7))
    network = RecordingNetwork()
    loss = DenoisingLoss(LogNormalSigmas(1.0, 1.6), VWeighting())
    output = loss(Denoiser(network, VScalingEDMNoise()), x0, num_frames=2, generator=torch.Generator().manual_seed(8))
    network_input, c_noise, network_output = network.calls[-1]
    sigma = torch.exp(4.0 * c_noise).reshape(-1, 1, 1, 1)
    a = 1.0 / (1.0 + sigma**2)
    noise = (network_input / a.sqrt() - x0) / sigma
    v_target = a.sqrt() * noise - (1 - a).sqrt() * x0
    literal = ((network_output - v_target) ** 2).reshape(4, -1).mean(dim=1)
    torch.testing.assert_close(output.per_clip, literal, rtol=2e-4, atol=1e-6)
