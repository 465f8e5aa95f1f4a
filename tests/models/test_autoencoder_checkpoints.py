"""Autoencoder weight files: numeric parity with diffusers, official/ldm/bare round trips, strict errors."""

import json
import logging

import diffusers
import pytest
import torch

from lightning_svd.models.autoencoder import build_autoencoder
from lightning_svd.models.autoencoder_checkpoints import (
    diffusers_to_sgm,
    load_autoencoder,
    save_autoencoder,
    sgm_to_diffusers,
)
from lightning_svd.models.state_dict_io import CheckpointError, write_state_dict

logging.getLogger("diffusers").setLevel(logging.ERROR)

TOLERANCE = 1e-4


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours - reference).norm() / reference.norm()).item()


def perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random values in every tensor (mix factors, zero-initialised convs) so every name is exercised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def diffusers_temporal(tmp_path_factory):
    torch.manual_seed(0)
    reference = diffusers.AutoencoderKLTemporalDecoder(
        down_block_types=("DownEncoderBlock2D",) * 2,
        block_out_channels=(32, 64),
        layers_per_block=2,
        latent_channels=4,
    )
    perturbed(reference, seed=0)
    folder = tmp_path_factory.mktemp("svd_vae")
    reference.save_pretrained(folder)
    return reference, folder


@pytest.fixture(scope="module")
def diffusers_image(tmp_path_factory):
    torch.manual_seed(1)
    reference = diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        scaling_factor=0.13025,
    )
    perturbed(reference, seed=1)
    folder = tmp_path_factory.mktemp("sd_vae")
    reference.save_pretrained(folder)
    return reference, folder


def test_temporal_decoder_matches_diffusers(diffusers_temporal):
    reference, folder = diffusers_temporal
    ours = load_autoencoder(folder).eval()
    assert ours.temporal and ours.post_quant_conv is None and ours.quant_conv is not None
    assert ours.config.channel_multipliers == (1, 2) and ours.config.res_blocks_per_level == 2
    z = torch.randn(2 * 3, 4, 6, 6, generator=torch.Generator().manual_seed(5))
    images = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(6)) * 2 - 1
    with torch.no_grad():
        decoded_error = relative_error(ours.decode(z, num_frames=3), reference.decode(z, num_frames=3).sample)
        theirs, mine = reference.encode(images).latent_dist, ours.encode(images)
        mean_error = relative_error(mine.mean, theirs.mean)
        logvar_error = relative_error(mine.logvar, theirs.logvar)
    assert decoded_error <= TOLERANCE
    assert mean_error <= TOLERANCE and logvar_error <= TOLERANCE


def test_image_autoencoder_matches_diffusers(diffusers_image):
    reference, folder = diffusers_image
    ours = load_autoencoder(folder).eval()
    assert not ours.temporal and ours.post_quant_conv is not None
    assert ours.config.norm_groups == 8 and ours.scale_factor == pytest.approx(0.13025)
    z = torch.randn(3, 4, 6, 6, generator=torch.Generator().manual_seed(7))
    images = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(8)) * 2 - 1
    with torch.no_grad():
        assert relative_error(ours.decode(z), reference.decode(z).sample) <= TOLERANCE
        theirs, mine = reference.encode(images).latent_dist, ours.encode(images)
        assert relative_error(mine.mean, theirs.mean) <= TOLERANCE
        assert relative_error(mine.std, theirs.std) <= TOLERANCE


def test_saved_diffusers_folder_loads_in_diffusers_with_the_same_output(diffusers_temporal, tmp_path):
    _, folder = diffusers_temporal
    ours = load_autoencoder(folder).eval()
    save_autoencoder(ours, tmp_path / "vae", layout="diffusers")
    reloaded = diffusers.AutoencoderKLTemporalDecoder.from_pretrained(tmp_path / "vae").eval()
    z = torch.randn(4, 4, 6, 6, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert relative_error(ours.decode(z, num_frames=4), reloaded.decode(z, num_frames=4).sample) <= TOLERANCE


def test_name_maps_are_inverse_and_cover_every_tensor(diffusers_temporal, diffusers_image):
    for reference, folder in (diffusers_temporal, diffusers_image):
        theirs = reference.state_dict()
        ours = diffusers_to_sgm(theirs)
        model = load_autoencoder(folder)
        assert set(ours) == set(model.state_dict())
        back = sgm_to_diffusers(ours)
        assert set(back) == set(theirs)
        for name, tensor in theirs.items():
            assert torch.equal(back[name], tensor), name


def test_official_single_file_round_trip_and_architecture_inference(tmp_path):
    torch.manual_seed(2)
    model = perturbed(build_autoencoder("tiny", temporal_decoder=True), seed=2)
    path = save_autoencoder(model, tmp_path / "svd_like.safetensors")
    loaded = load_autoencoder(path).eval()
    assert loaded.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    z = torch.randn(3, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(z, num_frames=3), model.decode(z, num_frames=3))


def test_official_file_with_other_models_and_an_ldm_checkpoint(tmp_path):
    model = perturbed(build_autoencoder("tiny"), seed=3)
    mixed = {f"first_stage_model.{k}": v for k, v in model.state_dict().items()}
    mixed["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(8, 8, 3, 3)
    mixed["conditioner.embedders.3.encoder.encoder.conv_in.weight"] = torch.zeros(32, 3, 3, 3)
    loaded = load_autoencoder(write_state_dict(mixed, tmp_path / "official.safetensors"))
    assert torch.equal(loaded.encoder.conv_in.weight, model.encoder.conv_in.weight)
    # SD 2.1 ldm checkpoints are torch pickles with everything under "state_dict".
    ldm = tmp_path / "v2-1.ckpt"
    torch.save({"state_dict": {**mixed, "cond_stage_model.model.ln_final.weight": torch.ones(4)}}, ldm)
    loaded = load_autoencoder(ldm)
    assert not loaded.temporal and loaded.post_quant_conv is not None
    assert torch.equal(loaded.decoder.conv_out.weight, model.decoder.conv_out.weight)


def test_bare_files_with_sgm_or_diffusers_names(diffusers_image, tmp_path):
    model = perturbed(build_autoencoder("tiny"), seed=4)
    loaded = load_autoencoder(save_autoencoder(model, tmp_path / "bare.safetensors", layout="bare"))
    assert torch.equal(loaded.quant_conv.weight, model.quant_conv.weight)
    reference, _ = diffusers_image
    flat = write_state_dict(reference.state_dict(), tmp_path / "diffusers_names.safetensors")
    from_flat = load_autoencoder(flat, norm_groups=8)
    z = torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        assert relative_error(from_flat.decode(z), reference.decode(z).sample) <= TOLERANCE


def test_pipeline_folder_and_sharded_weights(diffusers_temporal, tmp_path):
    reference, _ = diffusers_temporal
    reference.save_pretrained(tmp_path / "pipeline" / "vae", max_shard_size="200KB")
    index = json.loads((tmp_path / "pipeline" / "vae" / "diffusion_pytorch_model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    loaded = load_autoencoder(tmp_path / "pipeline")
    z = torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        assert relative_error(loaded.decode(z, num_frames=2), reference.decode(z, num_frames=2).sample) <= TOLERANCE


def test_wrong_files_raise_one_error_listing_missing_unexpected_and_misshaped(tmp_path):
    image_path = save_autoencoder(build_autoencoder("tiny"), tmp_path / "image.safetensors")
    with pytest.raises(CheckpointError) as error:
        load_autoencoder(image_path, preset="tiny", temporal_decoder=True, use_post_quant_conv=False)
    message = str(error.value)
    assert "missing" in message and "decoder.mid.block_1.mix_factor" in message
    assert "unexpected" in message and "post_quant_conv.weight" in message

    state = build_autoencoder("tiny").state_dict()
    state["decoder.conv_in.weight"] = torch.zeros(64, 8, 3, 3)
    state["decoder.extra.weight"] = torch.zeros(1)
    del state["encoder.norm_out.bias"]
    broken = write_state_dict(state, tmp_path / "broken.safetensors")
    with pytest.raises(CheckpointError) as error:
        load_autoencoder(broken, preset="tiny")
    message = str(error.value)
    assert "missing 1: encoder.norm_out.bias" in message
    assert "unexpected 1: decoder.extra.weight" in message
    assert "mis-shaped 1: decoder.conv_in.weight (file (64, 8, 3, 3), model (64, 4, 3, 3))" in message

    unet_only = write_state_dict({"model.diffusion_model.out.2.weight": torch.zeros(1)}, tmp_path / "unet.safetensors")
    with pytest.raises(CheckpointError, match="holds no autoencoder weights"):
        load_autoencoder(unet_only)
    (tmp_path / "unet_folder").mkdir()
    (tmp_path / "unet_folder" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(CheckpointError, match="UNet2DConditionModel"):
        load_autoencoder(tmp_path / "unet_folder")
    with pytest.raises(CheckpointError, match="not found"):
        load_autoencoder(tmp_path / "missing.safetensors")


def test_convert_command_moves_an_svd_vae_between_diffusers_and_the_official_file(diffusers_temporal, tmp_path, capsys):
    from safetensors.torch import load_file

    from lightning_svd.models.convert import main as convert_main

    reference, folder = diffusers_temporal
    pipeline = tmp_path / "pipeline"
    reference.save_pretrained(pipeline / "vae")
    official = tmp_path / "svd.safetensors"
    common = ["--model", "autoencoder", "--dtype", "float16"]
    assert convert_main([str(pipeline), str(official), "--to", "official", *common]) == 0
    tensors = load_file(official)
    assert all(k.startswith("first_stage_model.") for k in tensors)
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    assert convert_main([str(official), str(tmp_path / "vae"), "--to", "diffusers", *common[:2]]) == 0
    assert "temporal-decoder autoencoder" in capsys.readouterr().out
    again = diffusers.AutoencoderKLTemporalDecoder.from_pretrained(tmp_path / "vae", torch_dtype=torch.float16)
    assert all(torch.equal(v.half(), again.state_dict()[k]) for k, v in reference.state_dict().items())

    vae = ["--model", "autoencoder"]
    assert convert_main([str(official), str(tmp_path / "vae.ckpt"), "--to", "official", *vae]) == 2
    assert convert_main([str(tmp_path / "none"), str(tmp_path / "x"), "--to", "diffusers", *vae]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and "are .safetensors" in errors[0] and "not found" in errors[1]
