"""Direct checks: image-to-video conditioning, interpolation masking, LoRA freezing/saving/merging, EMA."""

import pytest
import torch
from omegaconf import OmegaConf

from lightning_svd.config import load_config
from lightning_svd.models.lora import LoRALinear, add_lora, load_lora_state_dict, lora_state_dict, merge_lora
from lightning_svd.stages import STAGES


def stage_of(experiment: str, *overrides: str):
    cfg = load_config(experiment, "tiny", ["train.height=16", "train.width=16", *overrides])
    torch.manual_seed(0)
    return STAGES[cfg.train.name](stage=OmegaConf.to_container(cfg.train, resolve=True), seed=0)


def batch(frames: int, clips: int = 2) -> dict:
    generator = torch.Generator().manual_seed(1)
    return {"video": torch.rand(clips, frames, 3, 16, 16, generator=generator) * 2 - 1, "txt": ["a", "b"][:clips],
            "fps_id": torch.full((clips,), 7.0), "motion_bucket_id": torch.full((clips,), 127.0)}


def unzero(unet: torch.nn.Module) -> None:
    """A fresh UNet's zero-initialised layers pass no gradient to what comes before them: perturb them."""
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if ".lora_" not in name and not parameter.any():
                parameter.normal_(std=0.05)


def test_i2v_conditions_on_the_clean_first_frame_repeated_over_time():
    stage = stage_of("i2v", "train.num_frames=3").eval()
    data = stage.prepare_batch(batch(3), None)
    assert torch.equal(data["cond_frames"], data["video"][:, 0])
    data["cond_aug"] = torch.zeros(2)
    cond, uncond = stage.conditioner.conditional_and_unconditional(data, num_frames=3)
    first_latent = stage.autoencoder.encode(data["video"][:, 0]).mode()
    assert torch.allclose(cond["concat"], first_latent.repeat_interleave(3, dim=0))
    clip_token = stage.conditioner.inputs[0].embedder(data["video"][:, 0])
    assert torch.allclose(cond["crossattn"], clip_token.repeat_interleave(3, dim=0))
    assert cond["vector"].shape == (6, stage.vector_dim()) and torch.equal(cond["vector"], uncond["vector"])
    assert not uncond["concat"].any() and not uncond["crossattn"].any()
    assert stage.unet.config.in_channels == 2 * stage.autoencoder.latent_channels


def test_i2v_noise_augmentation_uses_the_cond_aug_it_reports():
    stage = stage_of("i2v", "train.num_frames=2").eval()
    data = stage.prepare_batch(batch(2), None)
    data["cond_aug"] = torch.tensor([0.0, 0.5])
    cond = stage.conditioner(data, num_frames=2, drop=False)
    clean = stage.autoencoder.encode(data["video"][:, 0]).mode().repeat_interleave(2, dim=0)
    assert torch.allclose(cond["concat"][:2], clean[:2]) and not torch.allclose(cond["concat"][2:], clean[2:])


def test_interpolation_sequence_masks_the_middle_frames():
    stage = stage_of("frame_interpolation")
    with torch.no_grad():
        stage.mask_embedding.embedding.normal_()
    data = stage.prepare_batch(batch(5), torch.Generator().manual_seed(0))
    data["cond_aug"] = torch.zeros(2)
    sequence = stage.conditioning_sequence(data, 5, torch.Generator().manual_seed(0)).unflatten(0, (2, 5))
    channels = stage.autoencoder.latent_channels
    latents, mask = sequence[:, :, :channels], sequence[:, :, channels]
    assert mask.flatten(2).mean(-1).tolist() == [[1, 0, 0, 0, 1]] * 2
    given = stage.encode_frames(data["video"][:, [0, -1]]).unflatten(0, (2, 2))
    assert torch.allclose(latents[:, 0], given[:, 0]) and torch.allclose(latents[:, -1], given[:, 1])
    for frame in (1, 2, 3):
        assert torch.equal(latents[:, frame], stage.mask_embedding.embedding.expand(2, -1, -1, -1))
    assert stage.unet.config.in_channels == 2 * channels + 1
    tokens = stage.conditioner(data, num_frames=5, drop=False)["crossattn"]
    assert tokens.shape[:2] == (10, 2)


def test_interpolation_mask_embedding_learns():
    stage = stage_of("frame_interpolation")
    unzero(stage.unet)
    loss = stage.compute_loss(batch(5), 0).loss
    loss.backward()
    assert stage.mask_embedding.embedding.grad is not None and stage.mask_embedding.embedding.grad.abs().sum() > 0


def test_camera_lora_step_changes_only_lora_tensors():
    stage = stage_of("camera_lora", "train.num_frames=2")
    unzero(stage.unet)
    before = {k: v.clone() for k, v in stage.state_dict().items()}
    optimizer = torch.optim.AdamW(stage.trainable_parameters(), lr=1e-2)
    assert all(".lora_" in n for n, p in stage.named_parameters() if p.requires_grad)
    stage.compute_loss(batch(2), 0).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    stage.compute_loss(batch(2), 1).loss.backward()
    optimizer.step()
    changed = {k for k, v in stage.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".lora_" in k for k in changed)
    assert any(".lora_up." in k for k in changed)


def test_lora_saves_loads_and_merges_on_its_own():
    torch.manual_seed(0)
    stage = stage_of("i2v", "train.num_frames=2")
    unet = stage.unet
    paths = add_lora(unet, rank=4)
    assert paths and all("time_stack" in p for p in paths)
    for module in unet.modules():
        if isinstance(module, LoRALinear):
            torch.nn.init.normal_(module.lora_up.weight, std=0.1)
    adapters = lora_state_dict(unet)
    other = stage_of("i2v", "train.num_frames=2").unet
    other.load_state_dict({k: v for k, v in unet.state_dict().items() if ".lora_" not in k}, strict=False)
    add_lora(other, rank=4)
    load_lora_state_dict(other, adapters)
    x, c_noise = torch.randn(4, unet.config.in_channels, 8, 8), torch.zeros(4)
    context = torch.randn(4, 1, unet.config.context_dim)
    y = torch.randn(4, unet.config.adm_in_channels)
    with torch.no_grad():
        expected = unet(x, c_noise, context, y, num_frames=2)
        assert torch.allclose(other(x, c_noise, context, y, num_frames=2), expected, atol=1e-5)
        assert merge_lora(other) == len(paths)
        assert not any(isinstance(m, LoRALinear) for m in other.modules())
        assert torch.allclose(other(x, c_noise, context, y, num_frames=2), expected, atol=1e-4)
    with pytest.raises(ValueError, match="do not fit"):
        load_lora_state_dict(unet, {})


def test_ema_weights_are_swapped_in_and_restored():
    stage = stage_of("finetune_t2v_hq", "train.num_frames=2", "train.ema.decay=0.5")
    weight = stage.unet.out[-1].weight
    trained = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    stage.ema.update()
    shifted = weight.detach().clone()
    with stage.ema_weights():
        inside = weight.detach().clone()
    assert torch.equal(weight, shifted)
    assert not torch.equal(inside, shifted) and not torch.equal(inside, trained)
    assert torch.allclose(inside, trained + 0.9)   # decay min(0.5, 1/10) = 0.1 on the first update
