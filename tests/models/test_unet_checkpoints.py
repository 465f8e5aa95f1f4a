"""UNet weight files: parity with diffusers, official/ldm single files, strict errors and the converter
(tiny random models written to tmp folders; nothing is downloaded)."""

import pytest
import torch
from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel

from lightning_svd.models import CheckpointError, build_unet, load_unet, save_unet_official
from lightning_svd.models.convert import main as convert_main
from lightning_svd.models.embeddings import timestep_embedding
from lightning_svd.models.state_dict_io import read_state_dict, write_state_dict
from lightning_svd.models.unet_checkpoints import OFFICIAL_PREFIX

CLIPS, FRAMES, SIZE, CONTEXT, ID_DIM = 2, 3, 8, 32, 8


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights on top of the init, so zero-initialised layers take part in the comparison."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model


def tiny_diffusers_video_unet() -> UNetSpatioTemporalConditionModel:
    torch.manual_seed(0)
    model = UNetSpatioTemporalConditionModel(
        in_channels=8,
        out_channels=4,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        layers_per_block=1,
        cross_attention_dim=CONTEXT,
        num_attention_heads=(2, 4),
        addition_time_embed_dim=ID_DIM,
        projection_class_embeddings_input_dim=3 * ID_DIM,
    )
    return perturbed(model).eval()


def tiny_diffusers_image_unet(class_embedding: bool) -> UNet2DConditionModel:
    torch.manual_seed(0)
    extra = {"class_embed_type": "projection", "projection_class_embeddings_input_dim": 24} if class_embedding else {}
    model = UNet2DConditionModel(
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=CONTEXT,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        **extra,
    )
    return perturbed(model).eval()


def video_inputs(in_channels: int = 8, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(CLIPS, FRAMES, in_channels, SIZE, SIZE, generator=generator)
    c_noise = torch.randn(CLIPS, generator=generator)
    context = torch.randn(CLIPS, 1, CONTEXT, generator=generator)
    ids = torch.rand(CLIPS, 3, generator=generator) * 100
    return sample, c_noise, context, ids


def ours_on_video_inputs(unet, sample, c_noise, context, ids, **kwargs):
    """Our contract: frames flattened into the batch, per-frame noise level, context and vector."""
    y = timestep_embedding(ids.flatten(), ID_DIM).reshape(CLIPS, -1).repeat_interleave(FRAMES, 0)
    out = unet(
        sample.flatten(0, 1),
        c_noise.repeat_interleave(FRAMES),
        context.repeat_interleave(FRAMES, 0),
        y,
        num_frames=FRAMES,
        **kwargs,
    )
    return out.unflatten(0, (CLIPS, FRAMES))


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours - reference).abs().max() / reference.abs().max()).item()


@pytest.fixture(scope="module")
def diffusers_video_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("svd_unet")
    model = tiny_diffusers_video_unet()
    model.save_pretrained(folder)
    return folder, model


@torch.no_grad()
def test_diffusers_video_unet_loads_strictly_and_matches_its_output(diffusers_video_folder):
    folder, reference = diffusers_video_folder
    unet = load_unet(folder)
    assert all(p.requires_grad and p.device.type == "cpu" for p in unet.parameters())
    assert unet.config.temporal and unet.config.heads_per_level == (2, 4)
    assert unet.config.resnet_eps_overrides["input_blocks.1.0"] == 1e-6
    assert "middle_block.0" not in unet.config.resnet_eps_overrides
    inputs = video_inputs()
    expected = reference(*inputs).sample
    assert relative_error(ours_on_video_inputs(unet, *inputs), expected) <= 1e-4


@pytest.mark.parametrize("class_embedding", [False, True])
@torch.no_grad()
def test_image_only_path_matches_diffusers_image_unet(tmp_path, class_embedding):
    reference = tiny_diffusers_image_unet(class_embedding)
    reference.save_pretrained(tmp_path)
    generator = torch.Generator().manual_seed(2)
    n = CLIPS * FRAMES
    x, t = torch.randn(n, 4, SIZE, SIZE, generator=generator), torch.rand(n, generator=generator) * 900
    context, y = torch.randn(n, 5, CONTEXT, generator=generator), torch.randn(n, 24, generator=generator)
    expected = reference(x, t, context, class_labels=y if class_embedding else None).sample
    y = y if class_embedding else None

    image_unet = load_unet(tmp_path)
    assert not image_unet.config.temporal
    assert relative_error(image_unet(x, t, context, y, num_frames=FRAMES), expected) <= 1e-4

    video_unet = load_unet(tmp_path, temporal=True)
    images = torch.ones(CLIPS, FRAMES)
    out = video_unet(x, t, context, y, num_frames=FRAMES, image_only_indicator=images)
    assert relative_error(out, expected) <= 1e-4
    assert relative_error(video_unet(x, t, context, y, num_frames=FRAMES), expected) > 1e-3


@torch.no_grad()
def test_official_single_file_round_trip_gives_identical_outputs(tmp_path):
    unet = perturbed(build_unet("tiny", in_channels=8))
    tensors = {OFFICIAL_PREFIX + k: v for k, v in unet.state_dict().items()}
    tensors["first_stage_model.decoder.conv_in.weight"] = torch.zeros(3)
    tensors["conditioner.embedders.0.open_clip.model.visual.proj"] = torch.zeros(2)
    write_state_dict(tensors, tmp_path / "svd_tiny.safetensors")

    loaded = load_unet(tmp_path / "svd_tiny.safetensors", head_channels=16)
    assert loaded.config == unet.config
    sample, c_noise, context, ids = video_inputs()
    assert torch.equal(
        ours_on_video_inputs(loaded, sample, c_noise, context, ids),
        ours_on_video_inputs(unet, sample, c_noise, context, ids),
    )
    with pytest.raises(CheckpointError, match="head_channels"):
        load_unet(tmp_path / "svd_tiny.safetensors")
    save_unet_official(unet, tmp_path / "with_heads.safetensors")
    assert load_unet(tmp_path / "with_heads.safetensors").config.heads_per_level == (2, 4)


def test_ldm_image_checkpoint_fills_the_spatial_layers_of_a_video_unet(tmp_path):
    image = perturbed(build_unet("tiny", temporal=False, adm_in_channels=None))
    tensors = {OFFICIAL_PREFIX + k: v for k, v in image.state_dict().items()}
    tensors["cond_stage_model.model.token_embedding.weight"] = torch.zeros(4, 2)
    tensors["betas"] = torch.zeros(10)
    torch.save({"state_dict": tensors, "global_step": 3}, tmp_path / "sd21.ckpt")

    assert not load_unet(tmp_path / "sd21.ckpt", head_channels=16).config.temporal
    video = load_unet(tmp_path / "sd21.ckpt", head_channels=16, temporal=True, adm_in_channels=24)
    state = video.state_dict()
    assert all(torch.equal(state[k], v) for k, v in image.state_dict().items())
    assert torch.count_nonzero(state["input_blocks.1.0.time_stack.out_layers.3.weight"]) == 0
    assert state["middle_block.1.time_mixer.mix_factor"].item() == 0.5
    assert state["label_emb.0.0.weight"].shape == (128, 24)

    del tensors[OFFICIAL_PREFIX + "middle_block.1.norm.bias"]
    torch.save({"state_dict": tensors}, tmp_path / "broken.ckpt")
    with pytest.raises(CheckpointError, match=r"1 missing \[middle_block.1.norm.bias\]"):
        load_unet(tmp_path / "broken.ckpt", head_channels=16, temporal=True)


def test_strict_loading_names_missing_unexpected_and_misshaped_keys(tmp_path):
    tensors = {OFFICIAL_PREFIX + k: v for k, v in build_unet("tiny").state_dict().items()}
    for name in [n for n in tensors if ".attn1.to_out.0.bias" in n]:
        del tensors[name]
    tensors[OFFICIAL_PREFIX + "input_blocks.1.0.extra.weight"] = torch.zeros(1)
    tensors[OFFICIAL_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"] = torch.zeros(32, 31)
    write_state_dict(tensors, tmp_path / "wrong.safetensors")
    with pytest.raises(CheckpointError) as caught:
        load_unet(tmp_path / "wrong.safetensors", head_channels=16)
    message = str(caught.value)
    assert "\n" not in message
    assert "8 missing [" in message and "(+3 more)" in message
    assert "1 unexpected [input_blocks.1.0.extra.weight]" in message
    to_q = "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    assert f"1 mis-shaped [{to_q}: file [32, 31] vs model [32, 32]]" in message

    write_state_dict({"first_stage_model.decoder.conv_in.weight": torch.zeros(1)}, tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="holds no UNet weights"):
        load_unet(tmp_path / "vae.safetensors")


@torch.no_grad()
def test_convert_official_to_diffusers_and_back(tmp_path, diffusers_video_folder, capsys):
    folder, reference = diffusers_video_folder
    assert convert_main([str(folder), str(tmp_path / "official.safetensors"), "--to", "official"]) == 0
    official = read_state_dict(tmp_path / "official.safetensors")
    assert all(k.startswith(OFFICIAL_PREFIX) for k in official)

    to_diffusers = [str(tmp_path / "official.safetensors"), str(tmp_path / "back"), "--to", "diffusers"]
    assert convert_main([*to_diffusers, "--addition-time-embed-dim", str(ID_DIM)]) == 0
    again = UNetSpatioTemporalConditionModel.from_pretrained(tmp_path / "back").eval()
    original, converted = reference.state_dict(), again.state_dict()
    assert original.keys() == converted.keys()
    assert all(torch.equal(original[k], converted[k]) for k in original)
    inputs = video_inputs()
    assert torch.equal(again(*inputs).sample, reference(*inputs).sample)

    save_unet_official(load_unet(tmp_path / "back"), tmp_path / "official2.safetensors")
    resaved = read_state_dict(tmp_path / "official2.safetensors")
    assert all(torch.equal(resaved[k], v) for k, v in official.items())

    assert convert_main([str(tmp_path / "missing.safetensors"), str(tmp_path / "x"), "--to", "diffusers"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not found" in error


@torch.no_grad()
def test_image_unet_converts_to_a_diffusers_image_folder(tmp_path):
    reference = tiny_diffusers_image_unet(class_embedding=False)
    reference.save_pretrained(tmp_path / "src")
    unet = load_unet(tmp_path / "src")
    write_state_dict({OFFICIAL_PREFIX + k: v for k, v in unet.state_dict().items()}, tmp_path / "sd.safetensors")
    assert convert_main([str(tmp_path / "sd.safetensors"), str(tmp_path / "dst"), "--to", "diffusers"]) == 2
    arguments = [str(tmp_path / "sd.safetensors"), str(tmp_path / "dst"), "--to", "diffusers"]
    assert convert_main([*arguments, "--head-channels", "16", "--dtype", "float16"]) == 0
    assert {t.dtype for t in read_state_dict(tmp_path / "dst" / "diffusion_pytorch_model.safetensors").values()} == {
        torch.float16
    }
    converted = UNet2DConditionModel.from_pretrained(tmp_path / "dst", torch_dtype=torch.float16).state_dict()
    assert all(torch.equal(v.half(), converted[k]) for k, v in reference.state_dict().items())


@torch.no_grad()
def test_pipeline_folder_with_sharded_or_variant_weights_loads(tmp_path, diffusers_video_folder):
    folder, reference = diffusers_video_folder
    reference.save_pretrained(tmp_path / "sharded" / "unet", max_shard_size="1MB")
    assert (tmp_path / "sharded" / "unet" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    variant = tmp_path / "variant"
    variant.mkdir()
    (variant / "config.json").write_text((folder / "config.json").read_text())
    weights = (folder / "diffusion_pytorch_model.safetensors").read_bytes()
    (variant / "diffusion_pytorch_model.fp16.safetensors").write_bytes(weights)

    expected = load_unet(folder).state_dict()
    for source in (tmp_path / "sharded", variant):
        loaded = load_unet(source).state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in expected.items())
