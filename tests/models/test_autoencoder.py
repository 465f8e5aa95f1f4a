"""The KL autoencoder and the temporal decoder: structure, blending semantics, chunked decoding, posterior."""

import math

import pytest
import torch

from lightning_svd.models.autoencoder import (
    SD21_LATENT_SCALE,
    DiagonalGaussian,
    VideoResnetBlock,
    build_autoencoder,
)


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Perturb every tensor so zero-initialised layers (temporal outputs, mix factors) matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def test_sd21_and_svd_presets_have_the_released_sizes_and_names():
    with torch.device("meta"):
        sd21 = build_autoencoder("sd21")
        svd = build_autoencoder("svd")
    # Parameter counts of the SD 2.1 VAE and of the released SVD VAE (= diffusers' configurations of both).
    assert sum(p.numel() for p in sd21.parameters()) == 83_653_863
    assert sum(p.numel() for p in svd.parameters()) == 97_742_847
    assert sd21.scale_factor == svd.scale_factor == SD21_LATENT_SCALE == 0.18215
    names = dict(svd.named_parameters())
    assert names["decoder.conv_out.time_mix_conv.weight"].shape == (3, 3, 3, 1, 1)
    assert names["decoder.up.3.block.0.time_stack.in_layers.2.weight"].shape == (512, 512, 3, 1, 1)
    assert names["decoder.up.0.block.2.time_stack.out_layers.3.weight"].shape == (128, 128, 3, 1, 1)
    assert names["decoder.mid.block_1.mix_factor"].shape == (1,)
    assert names["decoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert names["encoder.down.1.block.0.nin_shortcut.weight"].shape == (256, 128, 1, 1)
    assert names["quant_conv.weight"].shape == (8, 8, 1, 1)
    assert "post_quant_conv.weight" not in names and "post_quant_conv.weight" in dict(sd21.named_parameters())
    assert not any("time_stack" in n or "mix_factor" in n for n in dict(sd21.named_parameters()))
    assert not any("time_stack" in n for n in names if n.startswith("encoder."))
    assert not any("attn_1.time" in n for n in names)  # mid attention stays spatial


def test_temporal_decoder_starts_as_mix_factor_zero_and_zero_temporal_output():
    model = build_autoencoder("tiny", temporal_decoder=True)
    blocks = [m for m in model.decoder.modules() if isinstance(m, VideoResnetBlock)]
    assert len(blocks) == 2 + 2 * 2  # mid (2) + 2 levels x (res_blocks + 1)
    for block in blocks:
        assert block.mix_factor.item() == 0.0
        assert torch.count_nonzero(block.time_stack.out_layers[3].weight) == 0


def test_video_block_blends_with_alpha_on_the_temporal_branch():
    torch.manual_seed(0)
    block = randomize(VideoResnetBlock(8, 8, groups=4, kernel_size=(3, 1, 1)))
    with torch.no_grad():
        block.mix_factor.fill_(1.3)
    x = torch.randn(6, 8, 4, 4)
    spatial = super(VideoResnetBlock, block).forward(x)
    clips = spatial.unflatten(0, (2, 3)).transpose(1, 2)
    temporal = block.time_stack(clips).transpose(1, 2).flatten(0, 1)
    alpha = 1.0 / (1.0 + math.exp(-1.3))
    with torch.no_grad():
        expected = alpha * temporal + (1.0 - alpha) * spatial
        torch.testing.assert_close(block(x, num_frames=3), expected)


def test_temporal_decoder_mixes_frames_and_image_decoder_does_not():
    torch.manual_seed(0)
    z = torch.randn(4, 4, 8, 8)
    changed = z.clone()
    changed[1] += 1.0  # only frame 1 of the single 4-frame clip
    for temporal, expect_leak in ((True, True), (False, False)):
        model = randomize(build_autoencoder("tiny", temporal_decoder=temporal))
        with torch.no_grad():
            before, after = model.decode(z, num_frames=4), model.decode(changed, num_frames=4)
        leaked = (before[0] - after[0]).abs().max().item()
        assert (leaked > 1e-4) is expect_leak, (temporal, leaked)


def test_image_decoder_chunked_decode_equals_whole_batch():
    torch.manual_seed(1)
    model = randomize(build_autoencoder("tiny"))
    z = torch.randn(7, 4, 8, 8)
    with torch.no_grad():
        whole = model.decode(z)
        for chunk in (1, 3, 7, 10):
            torch.testing.assert_close(model.decode(z, decode_chunk_size=chunk), whole, rtol=1e-4, atol=1e-4)


def test_temporal_chunked_decode_is_clip_aware_deterministic_and_shaped():
    torch.manual_seed(2)
    model = randomize(build_autoencoder("tiny", temporal_decoder=True))
    clips, frames = 2, 5
    z = torch.randn(clips * frames, 4, 4, 4)
    with torch.no_grad():
        chunked = model.decode(z, num_frames=frames, decode_chunk_size=2)
        assert chunked.shape == (clips * frames, 3, 8, 8)
        torch.testing.assert_close(model.decode(z, num_frames=frames, decode_chunk_size=2), chunked)
        # Chunk k of clip c is decoded from exactly that clip's frames 2k, 2k+1 (never another clip's).
        second_clip_chunk = model.decode(z[frames + 2 : frames + 4], num_frames=2)
        torch.testing.assert_close(chunked[frames + 2 : frames + 4], second_clip_chunk, rtol=1e-5, atol=1e-5)
        last_frame = model.decode(z[frames - 1 : frames], num_frames=1)
        torch.testing.assert_close(chunked[frames - 1 : frames], last_frame, rtol=1e-5, atol=1e-5)
        # A chunk as long as the clip is the unchunked decode; shorter chunks differ (frames are mixed).
        whole = model.decode(z, num_frames=frames)
        torch.testing.assert_close(model.decode(z, num_frames=frames, decode_chunk_size=frames), whole)
        assert (whole - chunked).abs().max() > 1e-4
    configured = build_autoencoder("tiny", temporal_decoder=True, decode_chunk_size=2)
    configured.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(configured.decode(z, num_frames=frames), chunked)


def test_temporal_decoder_rejects_missing_or_uneven_frame_counts():
    model = build_autoencoder("tiny", temporal_decoder=True)
    z = torch.zeros(6, 4, 4, 4)
    with pytest.raises(ValueError, match="num_frames"):
        model.decode(z)
    with pytest.raises(ValueError, match="whole number"):
        model.decode(z, num_frames=4)


def test_posterior_mode_sample_and_kl_follow_the_diagonal_gaussian():
    mean = torch.randn(3, 4, 2, 2)
    logvar = torch.randn(3, 4, 2, 2)
    logvar[0, 0, 0, 0] = 50.0  # clamped to 20
    posterior = DiagonalGaussian(torch.cat([mean, logvar], dim=1))
    clamped = logvar.clamp(-30, 20)
    assert torch.equal(posterior.mode(), mean)
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(posterior.sample(generator), mean + torch.exp(0.5 * clamped) * noise)
    literal = 0.5 * (mean**2 + clamped.exp() - 1.0 - clamped).sum(dim=(1, 2, 3))
    torch.testing.assert_close(posterior.kl(), literal)


def test_encode_shapes_chunked_encode_and_latent_scaling():
    torch.manual_seed(4)
    model = randomize(build_autoencoder("tiny"))
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        posterior = model.encode(x)
        assert posterior.mean.shape == (5, 4, 8, 8)
        torch.testing.assert_close(model.encode(x, chunk_size=2).mean, posterior.mean, rtol=1e-5, atol=1e-5)
        latents = model.encode_to_latents(x, sample=False)
        torch.testing.assert_close(latents, posterior.mode() * 0.18215)
        torch.testing.assert_close(model.decode_latents(latents), model.decode(posterior.mode()), rtol=1e-4, atol=1e-4)
        reconstruction, _ = model(x)
        assert reconstruction.shape == x.shape


def test_build_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown autoencoder preset 'big'.*sd21"):
        build_autoencoder("big")
    with pytest.raises(ValueError, match="unknown autoencoder option.*'chanels'"):
        build_autoencoder("tiny", chanels=3)
    with pytest.raises(ValueError, match="norm_groups"):
        build_autoencoder("tiny", norm_groups=7)
