"""A tiny VideoUNet with SVD's V-scaled EDM denoiser and loss overfits one synthetic clip on CPU.

The noise levels are drawn from a narrow log-normal (P_mean 0.5, P_std 0.3) instead of a stage's broad one:
with a single clip the ideal denoiser returns that clip for every input, but the network output it must
produce, F = (x0 - c_skip x) / c_out, mixes input and clip with sigma-dependent weights, and over a broad
range of sigma a 1.3M-parameter UNet needs far more than the few hundred steps a CPU test can afford.
"""

import functools

import pytest
import torch

from lightning_svd.diffusion import Denoiser, DenoisingLoss, LogNormalSigmas, VScalingEDMNoise, VWeighting
from lightning_svd.models import build_unet

FRAMES, CHANNELS, SIZE = 4, 4, 16


def moving_square_clip() -> torch.Tensor:
    """A 6x6 coloured square sliding diagonally over a dark background, values in [-1, 1]."""
    frames = torch.full((FRAMES, CHANNELS, SIZE, SIZE), -0.5)
    colour = torch.tensor([0.9, -0.2, 0.4, 0.8]).reshape(CHANNELS, 1, 1)
    for t in range(FRAMES):
        row, col = 3 + t, 2 + 2 * t
        frames[t, :, row : row + 6, col : col + 6] = colour
    return frames


@pytest.fixture
def single_thread():
    """Tiny matrices run faster on one thread than on two contended ones; restore the setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
def test_tiny_unet_overfits_one_clip(single_thread):
    torch.manual_seed(0)
    clip = moving_square_clip()
    unet = build_unet("tiny", in_channels=CHANNELS, out_channels=CHANNELS)
    config = unet.config
    cond = {
        "context": torch.zeros(FRAMES, 1, config.context_dim),
        "y": torch.zeros(FRAMES, config.adm_in_channels),
        "num_frames": FRAMES,
    }
    denoise = functools.partial(Denoiser(unet, VScalingEDMNoise()), cond=cond)
    loss_fn = DenoisingLoss(LogNormalSigmas(p_mean=0.5, p_std=0.3), VWeighting())

    def held_out_loss() -> float:
        generator = torch.Generator().manual_seed(123)
        with torch.no_grad():
            losses = [loss_fn(denoise, clip, FRAMES, generator=generator).loss for _ in range(8)]
        return torch.stack(losses).mean().item()

    optimizer = torch.optim.Adam(unet.parameters(), lr=2e-3)
    initial = held_out_loss()
    for _ in range(200):
        loss = loss_fn(denoise, clip, FRAMES).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = held_out_loss()
    assert initial > 0.1
    assert final < initial / 10, f"loss fell only from {initial:.4f} to {final:.4f}"
