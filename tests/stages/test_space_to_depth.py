"""The tiny autoencoder stand-in: exact folding (channel = colour x f^2 + offset), scaled like SD's 0.18215."""

import pytest
import torch

from lightning_svd.stages.components import SpaceToDepthAutoencoder, build_stage_autoencoder


def test_folding_is_exactly_invertible_and_scales_the_latents():
    frames = torch.rand(3, 3, 16, 24) * 2 - 1
    plain, scaled = SpaceToDepthAutoencoder(2), SpaceToDepthAutoencoder(2, scale=2.5)
    latents = scaled.encode_to_latents(frames)
    assert latents.shape == (3, 12, 8, 12) and scaled.latent_channels == 12
    torch.testing.assert_close(latents, 2.5 * plain.encode_to_latents(frames))
    torch.testing.assert_close(scaled.decode_latents(latents), frames)
    assert latents[0, ::4, 0, 0].tolist() == pytest.approx((2.5 * frames[0, :, 0, 0]).tolist())


def test_config_builds_the_scaled_stand_in_and_rejects_a_bad_scale():
    model = build_stage_autoencoder({"kind": "space_to_depth", "factor": 4, "scale": 2.0})
    assert model.downsampling_factor == 4 and model.scale_factor == 2.0 and model.latent_channels == 48
    assert build_stage_autoencoder({"kind": "space_to_depth", "factor": 2}).scale_factor == 1.0
    with pytest.raises(ValueError, match="scale > 0"):
        SpaceToDepthAutoencoder(2, scale=0.0)
