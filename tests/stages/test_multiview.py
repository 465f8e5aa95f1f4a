"""The multi-view stage: trains two tiny steps from an image-to-video checkpoint, and its cameras reach the UNet.
"""

import math

import pytest
import torch
from omegaconf import OmegaConf

from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.stages import STAGES, MultiviewStage, load_init_weights, load_stage
from lightning_svd.stages.checkpoints import averaged_state_dict, read_checkpoint

from .tiny import tiny_run

SMALL_ORBITS = ["orbits.num_objects=2", "orbits.size=24"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory, clip_table):
    root = tmp_path_factory.mktemp("multiview_chain")
    # Without EMA the parent's raw and averaged weights agree, so the copied vector block is easy to check.
    results = {"i2v": tiny_run("i2v", root / "i2v", clip_table, "train.num_frames=2", "train.ema.enabled=false")}
    results["multiview"] = tiny_run("multiview", root / "multiview", clip_table, "train.num_frames=3",
                                    *SMALL_ORBITS, f"init_from={root / 'i2v'}")
    return root, results


def stage_of(*overrides: str) -> MultiviewStage:
    cfg = load_config("multiview", "tiny", ["train.height=16", "train.width=16", "train.num_frames=3", *overrides])
    torch.manual_seed(0)
    return STAGES[cfg.train.name](stage=OmegaConf.to_container(cfg.train, resolve=True), seed=0)


def orbit_batch(azimuths: list[float], polar: float = 1.4) -> dict:
    generator = torch.Generator().manual_seed(1)
    video = torch.rand(1, len(azimuths), 3, 16, 16, generator=generator) * 2 - 1
    return {"video": video, "image": video[:, 0], "azimuth_rad": torch.tensor([azimuths]),
            "polar_rad": torch.full((1, len(azimuths)), polar), "cond_aug": torch.zeros(1)}


def denoised(stage: MultiviewStage, batch: dict) -> torch.Tensor:
    """The denoiser's output for fixed noisy latents under the batch's conditioning."""
    data = stage.prepare_batch(dict(batch), None)
    frames = data["video"].shape[1]
    cond = stage.network_condition(stage.conditioner(data, num_frames=frames, drop=False), data, frames, None)
    latents = torch.randn(frames, stage.autoencoder.latent_channels, 8, 8, generator=torch.Generator().manual_seed(2))
    return stage.denoiser(latents, torch.tensor([1.0]), cond)


def test_multiview_trains_two_steps_from_an_image_to_video_checkpoint(chain):
    root, results = chain
    result = results["multiview"]
    assert result["steps"] == 2 and result["final_loss"] is not None and result["final_loss"] > 0
    assert (root / "multiview" / "checkpoints" / "last.ckpt").is_file()
    counts = result["init_weights"]
    assert counts["copied"] > 100 and counts["grown"] >= 1 and counts["new"] == counts["dropped"] == 0, counts
    stage = load_stage(root / "multiview")
    assert isinstance(stage, MultiviewStage) and stage.hparams.stage["num_frames"] == 3


def test_init_from_i2v_copies_its_vector_weights_and_starts_the_camera_at_zero(chain):
    root, _ = chain
    parent = averaged_state_dict(read_checkpoint(root / "i2v"))["unet.label_emb.0.0.weight"]
    stage = stage_of()
    load_init_weights(stage, root / "i2v")
    grown = stage.unet.label_emb[0][0].weight
    micro = 3 * 8
    assert parent.shape[1] == micro and grown.shape[1] == micro + 2 * 8 == stage.vector_dim()
    assert torch.equal(grown[:, :micro], parent) and not grown[:, micro:].any()


def test_camera_angles_reach_the_unet():
    stage = stage_of().eval()
    with torch.no_grad():
        stage.unet.label_emb[0][0].weight.normal_(std=0.5)
        for parameter in stage.unet.parameters():
            if not parameter.any():
                parameter.normal_(std=0.05)
        orbit = denoised(stage, orbit_batch([0.0, 2.0, 4.0]))
        assert torch.equal(orbit, denoised(stage, orbit_batch([0.0, 2.0, 4.0])))
        assert not torch.allclose(orbit, denoised(stage, orbit_batch([0.0, 1.0, 5.0])), atol=1e-4)
        assert not torch.allclose(orbit, denoised(stage, orbit_batch([0.0, 2.0, 4.0], polar=1.9)), atol=1e-4)
        stage.unet.label_emb[0][0].weight[:, 3 * 8:] = 0
        assert torch.allclose(denoised(stage, orbit_batch([0.0, 2.0, 4.0])),
                              denoised(stage, orbit_batch([0.0, 1.0, 5.0], polar=1.9)))


def test_azimuths_are_seen_relative_to_the_conditioning_view():
    stage = stage_of().eval()
    image = torch.zeros(2, 3, 16, 16)
    azimuths = torch.tensor([[0.0, 2.0, 4.0], [5.0, 7.0, 9.0]])
    cameras = stage.camera_batch(image, torch.full((2, 3), 1.4), azimuths)
    assert torch.allclose(cameras["azimuth_rad"][0], cameras["azimuth_rad"][1], atol=1e-6)
    assert cameras["azimuth_rad"].min() >= 0 and cameras["azimuth_rad"].max() < 2 * math.pi
    vector = stage.conditioner(cameras | {"cond_aug": torch.zeros(2)}, num_frames=3, drop=False)["vector"]
    assert vector.shape == (6, stage.vector_dim()) and torch.allclose(vector[:3], vector[3:], atol=1e-5)
    with pytest.raises(ValueError, match=r"must both be \(B, T\)"):
        stage.camera_batch(image, torch.zeros(2, 3), torch.zeros(2, 4))


def test_generate_samples_an_orbit_from_one_image():
    stage = stage_of()
    video = stage.generate(images=torch.zeros(1, 3, 16, 16), steps=2)
    assert video.shape == (1, 3, 16, 16, 3) and video.dtype == torch.uint8
    cameras = torch.tensor([[0.0, 1.0, 2.0]])
    explicit = stage.generate(images=torch.zeros(1, 3, 16, 16), steps=2, azimuth_rad=cameras,
                              polar_rad=torch.full((1, 3), 1.2))
    assert explicit.shape == video.shape


def test_paper_profile_carries_the_papers_numbers_and_needs_real_paths():
    cfg = load_config("multiview", "paper", check_paths=False)
    assert (cfg.train.num_frames, cfg.train.height, cfg.train.width) == (21, 576, 576)
    assert cfg.trainer.max_steps == 12000 and cfg.train.global_batch_size == 16
    assert cfg.train.optimizer.lr == 1.0e-5 and cfg.train.multiview.camera_dim == 512
    assert {"init_from", "train.data.orbits"} <= set(cfg.requires_paths)
    with pytest.raises(UserError, match="train.data.orbits"):
        load_config("multiview", "paper")
