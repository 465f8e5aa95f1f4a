"""The tiny autoencoder stand-in: exact folding (channel = colour x f^2 + offset), scaled like SD's 0.18215."""

import pytest
import torch

from lightning_svd.stages.components import SpaceToDepthAutoencoder, build_stage_autoencoder, haar_levels, haar_matrix


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


def test_haar_basis_is_orthonormal_and_puts_the_patch_mean_first():
    haar = haar_matrix(4)
    torch.testing.assert_close(haar @ haar.T, torch.eye(4))
    model = SpaceToDepthAutoencoder(4, scale=2.0, basis="haar")
    frames = torch.rand(2, 3, 16, 8) * 2 - 1
    latents = model.encode_to_latents(frames)
    torch.testing.assert_close(model.decode_latents(latents), frames)
    # channel 16 c is colour c's patch mean x 4 (the orthonormal DC term of 16 pixels) x the scale
    patch_means = torch.nn.functional.avg_pool2d(frames, 4)
    torch.testing.assert_close(latents[:, ::16], 2.0 * 4 * patch_means)
    flat = torch.ones(1, 3, 4, 4)
    assert model.encode_to_latents(flat)[0, 1:16].abs().max() < 1e-6  # a flat patch has no detail
    with pytest.raises(ValueError, match="power-of-2"):
        SpaceToDepthAutoencoder(3, basis="haar")
    with pytest.raises(ValueError, match="pixels or haar"):
        build_stage_autoencoder({"kind": "space_to_depth", "factor": 2, "basis": "dct"})


def test_detail_gains_scale_each_haar_level_and_still_invert():
    assert haar_levels(4).tolist() == [0, 1, 2, 2]
    plain = SpaceToDepthAutoencoder(4, basis="haar")
    gained = build_stage_autoencoder({"kind": "space_to_depth", "factor": 4, "basis": "haar", "detail_gains": [3, 8]})
    frames = torch.rand(2, 3, 8, 8) * 2 - 1
    ratio = gained.encode_to_latents(frames) / plain.encode_to_latents(frames)
    # per colour: the mean x1; coefficients whose coarsest 1-D level is 1 (3 of them) x3; the other 12 x8
    expected = torch.tensor([1.0, 3, 8, 8, 3, 3, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]).repeat(3)
    torch.testing.assert_close(ratio.mean(dim=(0, 2, 3)), expected)
    torch.testing.assert_close(gained.decode_latents(gained.encode_to_latents(frames)), frames)
    with pytest.raises(ValueError, match="2 positive gain"):
        SpaceToDepthAutoencoder(4, basis="haar", detail_gains=[3.0])
    with pytest.raises(ValueError, match="basis haar"):
        SpaceToDepthAutoencoder(4, detail_gains=[3.0, 8.0])
