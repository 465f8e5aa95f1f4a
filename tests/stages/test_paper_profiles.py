"""Every stage experiment's paper profile carries the paper's numbers (paper-notes §5-7) and builds the released
architectures (on the meta device: no memory, no weights)."""

import pytest
import torch
from omegaconf import OmegaConf

from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.stages import STAGES

SVD_PARAMETERS = 1_524_623_082
SD21_PARAMETERS = 865_910_724


def paper(experiment: str, *overrides: str):
    return load_config(experiment, "paper", list(overrides), check_paths=False)


def noise(cfg) -> tuple[float, float]:
    return cfg.train.diffusion.noise.p_mean, cfg.train.diffusion.noise.p_std


def meta_stage(cfg):
    with torch.device("meta"):
        return STAGES[cfg.train.name](stage=OmegaConf.to_container(cfg.train, resolve=True))


@pytest.mark.parametrize(
    "experiment", ["pretrain_image_edm", "pretrain_video", "finetune_t2v_hq", "i2v", "frame_interpolation",
                   "camera_lora"]
)
def test_paper_profile_runs_bf16_on_gpus_with_the_released_towers_and_needs_real_paths(experiment):
    cfg = paper(experiment)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.train.open_clip.model == "ViT-H-14" and cfg.train.autoencoder.kind == "kl"
    assert cfg.train.gradient_checkpointing is True
    assert dict(cfg.train.data.caption_probabilities) == {"coca": 0.5, "vblip": 0.25, "llm": 0.25, "sidecar": 0.0}
    assert "train.autoencoder.weights" in cfg.requires_paths and "train.data.table" in cfg.requires_paths
    with pytest.raises(UserError, match="train.autoencoder.weights"):
        load_config(experiment, "paper")


def test_image_adaptation_trains_the_time_embedding_first_then_everything():
    cfg = paper("pretrain_image_edm")
    assert cfg.train.num_frames == 1 and (cfg.train.height, cfg.train.width) == (256, 384)
    assert cfg.train.time_embedding_only_steps == 1000 and cfg.trainer.max_steps == 31000
    assert noise(cfg) == (-1.2, 1.0)
    assert cfg.train.unet.preset == "sd21" and "train.unet.weights" in cfg.requires_paths


@pytest.mark.parametrize(
    ("stage", "size", "steps", "batch", "p_mean"),
    [("256x384", (256, 384), 150000, 1536, -1.2), ("320x576", (320, 576), 100000, 768, 0.0)],
)
def test_video_pretraining_has_two_resolution_stages(stage, size, steps, batch, p_mean):
    cfg = paper("pretrain_video", f"stage={stage}")
    assert cfg.train.num_frames == 14 and (cfg.train.height, cfg.train.width) == size
    assert cfg.trainer.max_steps == steps and cfg.train.global_batch_size == batch
    assert cfg.train.optimizer.lr == 1.0e-4 and cfg.train.text.drop_rate == 0.15
    assert noise(cfg)[0] == p_mean
    assert list(cfg.train.micro_conditioning["keys"]) == ["fps_id", "motion_bucket_id"]
    assert cfg.train.micro_conditioning.dim == 256


def test_hq_text_to_video_finetune():
    cfg = paper("finetune_t2v_hq")
    assert (cfg.train.num_frames, cfg.train.height, cfg.train.width) == (14, 576, 1024)
    assert cfg.trainer.max_steps == 50000 and cfg.train.global_batch_size == 768
    assert cfg.train.optimizer.lr == 3.0e-5 and noise(cfg) == (0.5, 1.4)
    assert cfg.train.ema.enabled is True and cfg.train.ema.decay == 0.9999


@pytest.mark.parametrize(
    ("stage", "frames", "size", "p_mean", "ema", "guidance", "steps"),
    [
        ("320x576", 14, (320, 576), 0.7, False, (1.0, 2.5), 25),
        ("576x1024", 14, (576, 1024), 1.0, True, (1.0, 2.5), 25),
        ("576x1024", 25, (576, 1024), 1.0, True, (1.5, 3.0), 30),
    ],
)
def test_image_to_video_base_and_hq_stages_with_14_or_25_frames(stage, frames, size, p_mean, ema, guidance, steps):
    """Guidance and sampler steps as released: svd 25 steps, svd_xt 30."""
    cfg = paper("i2v", f"stage={stage}", f"frames={frames}")
    assert cfg.train.num_frames == frames and (cfg.train.height, cfg.train.width) == size
    assert cfg.trainer.max_steps == 50000 and cfg.train.global_batch_size == 768
    assert cfg.train.optimizer.lr == 3.0e-5 and noise(cfg) == (p_mean, 1.6)
    assert cfg.train.ema.enabled is ema and cfg.train.ema.decay == 0.9999
    assert (cfg.train.cond_aug.log_sigma_mean, cfg.train.cond_aug.log_sigma_std) == (-3.0, 0.5)
    guider = cfg.train.diffusion.sampling.guider
    assert guider.name == "linear_frames" and guider.num_frames == frames
    assert (guider.min_scale, guider.max_scale) == guidance
    assert cfg.train.diffusion.sampling.num_steps == steps


def test_interpolation_and_camera_lora():
    cfg = paper("frame_interpolation")
    assert (cfg.train.num_frames, cfg.train.height, cfg.train.width) == (5, 576, 1024)
    assert cfg.trainer.max_steps == 10000 and cfg.train.global_batch_size == 256
    assert cfg.train.optimizer.lr == 1.0e-4 and noise(cfg) == (1.0, 1.2) and cfg.train.ema.decay == 0.9999
    lora = paper("camera_lora")
    assert lora.train.lora.rank == 16 and lora.trainer.max_steps == 5000 and lora.train.num_frames == 14
    assert lora.train.data.camera_motion in ("pan", "zoom", "static")


def test_paper_image_to_video_stage_builds_the_released_unet():
    stage = meta_stage(paper("i2v"))
    config = stage.unet.config
    assert (config.in_channels, config.out_channels, config.adm_in_channels, config.context_dim) == (8, 4, 768, 1024)
    assert sum(p.numel() for p in stage.unet.parameters()) == SVD_PARAMETERS
    assert stage.conditioner.inputs[0].embedder.embed_dim == 1024
    assert stage.autoencoder.config.scale_factor == 0.18215


def test_paper_text_stages_build_the_text_to_video_and_image_unets():
    video = meta_stage(paper("pretrain_video")).unet.config
    assert (video.in_channels, video.adm_in_channels, video.context_dim, video.temporal) == (4, 512, 1024, True)
    image = meta_stage(paper("pretrain_image_edm")).unet
    assert not image.config.temporal and image.config.adm_in_channels is None
    assert sum(p.numel() for p in image.parameters()) == SD21_PARAMETERS
    interpolation = meta_stage(paper("frame_interpolation")).unet.config
    assert (interpolation.in_channels, interpolation.adm_in_channels) == (9, 768)
