"""VideoUNet structure and behaviour: released parameter names/count, forward contract, temporal fast path,
gradient checkpointing and chunked temporal attention (tiny configs, CPU, random weights)."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_svd.models import VideoUNet, build_unet
from lightning_svd.models.unet import PRESETS

KEYS_FILE = Path(__file__).parent.parent / "data" / "svd_unet_keys.txt"
SVD_PARAMETERS = 1_524_623_082


def released_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("#"):
            continue
        name, shape = line.split("\t")
        shapes[name.removeprefix("model.diffusion_model.")] = tuple(int(n) for n in shape.strip("[]").split(","))
    return shapes


def randomised(unet: VideoUNet, seed: int = 0) -> VideoUNet:
    """Random weights everywhere (zero-initialised layers would hide the branches under test)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return unet


def tiny_inputs(unet: VideoUNet, clips: int = 2, frames: int = 3, size: int = 8, seed: int = 1):
    config = unet.config
    generator = torch.Generator().manual_seed(seed)
    n = clips * frames
    x = torch.randn(n, config.in_channels, size, size, generator=generator)
    c_noise = torch.randn(clips, generator=generator).repeat_interleave(frames)
    context = torch.randn(clips, 2, config.context_dim, generator=generator).repeat_interleave(frames, 0)
    y = torch.randn(n, config.adm_in_channels, generator=generator)
    return x, c_noise, context, y, frames


def test_svd_preset_has_the_released_parameter_names_shapes_and_count():
    with torch.device("meta"):
        unet = build_unet("svd")
    ours = {name: tuple(t.shape) for name, t in unet.state_dict().items()}
    released = released_shapes()
    assert len(released) == 1428
    assert sorted(set(released) - set(ours)) == []
    assert sorted(set(ours) - set(released)) == []
    assert {n: s for n, s in ours.items() if released[n] != s} == {}
    assert sum(p.numel() for p in unet.parameters()) == SVD_PARAMETERS


def test_text_to_video_and_image_presets_differ_only_where_they_should():
    with torch.device("meta"):
        t2v, sd21 = build_unet("svd_t2v"), build_unet("sd21")
    assert t2v.state_dict()["input_blocks.0.0.weight"].shape == (320, 4, 3, 3)
    assert t2v.state_dict()["label_emb.0.0.weight"].shape == (1280, 512)
    temporal = (".time_stack.", ".time_mixer.", ".time_pos_embed.")
    spatial = {
        n: s
        for n, s in released_shapes().items()
        if not any(part in n for part in temporal) and not n.startswith("label_emb")
    }
    spatial["input_blocks.0.0.weight"] = (320, 4, 3, 3)
    assert {n: tuple(t.shape) for n, t in sd21.state_dict().items()} == spatial
    assert sum(p.numel() for p in sd21.parameters()) == 865_910_724


def test_forward_contract_shapes_and_clear_errors():
    unet = build_unet("tiny", in_channels=8)
    x, c_noise, context, y, frames = tiny_inputs(unet)
    out = unet(x, c_noise, context, y, num_frames=frames)
    assert out.shape == (x.shape[0], 4, 8, 8)
    with pytest.raises(ValueError, match="c_noise must be"):
        unet(x, c_noise[:2], context, y, num_frames=frames)
    with pytest.raises(ValueError, match="not a multiple of num_frames"):
        unet(x, c_noise, context, y, num_frames=4)
    with pytest.raises(ValueError, match="y must be"):
        unet(x, c_noise, context, None, num_frames=frames)
    with pytest.raises(ValueError, match="multiples of 2"):
        unet(x[..., :7, :7], c_noise, context, y, num_frames=frames)
    with pytest.raises(ValueError, match="unknown UNet preset"):
        build_unet("huge")
    with pytest.raises(ValueError, match="unknown UNet option"):
        build_unet("tiny", model_chanels=64)


def test_temporal_layers_start_as_released():
    unet = build_unet("tiny")
    resblock = unet.input_blocks[1][0]
    assert torch.count_nonzero(resblock.time_stack.out_layers[3].weight) == 0
    assert resblock.time_mixer.mix_factor.item() == 0.5
    assert unet.input_blocks[1][1].time_mixer.mix_factor.item() == 0.5
    assert PRESETS["tiny"].gradient_checkpointing is False


@torch.no_grad()
def test_image_only_fast_path_equals_computing_and_discarding_the_temporal_branches():
    unet = randomised(build_unet("tiny"))
    x, c_noise, context, y, frames = tiny_inputs(unet)
    images = torch.ones(2, frames)
    fast = unet(x, c_noise, context, y, num_frames=frames, image_only_indicator=images)
    mixed_indicator = torch.tensor([[1.0] * frames, [0.0] * frames])  # clip 1 forces the temporal branches to run
    full = unet(x, c_noise, context, y, num_frames=frames, image_only_indicator=mixed_indicator)
    torch.testing.assert_close(full[:frames], fast[:frames], rtol=0, atol=1e-6)
    assert (full[frames:] - fast[frames:]).abs().max() > 1e-2  # the video clip really used temporal layers

    spatial = build_unet("tiny", temporal=False)
    spatial.load_state_dict(unet.state_dict(), strict=False)
    assert torch.equal(spatial(x, c_noise, context, y, num_frames=frames), fast)


def test_gradient_checkpointing_gives_the_same_gradients():
    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        unet = randomised(build_unet("tiny", gradient_checkpointing=checkpointing, dropout=0.0))
        x, c_noise, context, y, frames = tiny_inputs(unet)
        unet(x, c_noise, context, y, num_frames=frames).square().mean().backward()
        return {n: p.grad for n, p in unet.named_parameters()}

    plain, checkpointed = gradients(False), gradients(True)
    assert all(g is not None for g in checkpointed.values())
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-6, msg=name)


@torch.no_grad()
def test_chunked_temporal_attention_matches_unchunked(monkeypatch):
    unet = randomised(build_unet("tiny"))
    x, c_noise, context, y, frames = tiny_inputs(unet)
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    whole = unet(x, c_noise, context, y, num_frames=frames)
    unchunked_calls = len(calls)
    unet.set_attention_max_batch_heads(64)
    chunked = unet(x, c_noise, context, y, num_frames=frames)
    assert len(calls) - unchunked_calls > unchunked_calls
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


def test_temporal_transformer_extra_feed_forward_is_optional_and_read_from_weights(tmp_path):
    from lightning_svd.models import load_unet, save_unet_official

    with_ff, without = build_unet("tiny"), randomised(build_unet("tiny", extra_ff_mix_layer=False))
    assert any(".time_stack.0.ff_in." in name for name in with_ff.state_dict())
    assert not any(".ff_in." in name or ".norm_in." in name for name in without.state_dict())
    x, c_noise, context, y, frames = tiny_inputs(without)
    with torch.no_grad():
        expected = without(x, c_noise, context, y, num_frames=frames)
        loaded = load_unet(save_unet_official(without, tmp_path / "no_ff.safetensors"))
        assert loaded.config.extra_ff_mix_layer is False
        assert torch.equal(loaded(x, c_noise, context, y, num_frames=frames), expected)
