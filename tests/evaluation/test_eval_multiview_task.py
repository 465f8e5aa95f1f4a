"""eval_multiview scores orbits end to end in the tiny profile (random-init and checkpointed stages), the
ground truth's cameras reach the multiview stage, and `experiment=report` renders the row."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from task_runs import run_task, save_stage_checkpoint

from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.stages import STAGES
from lightning_svd.synthetic.orbits import OrbitSpec, ensure_orbits
from lightning_svd.tasks.evaluate import fit_guider_to_frames, generate_orbit, load_orbit

MULTIVIEW_FAST = ["evaluation.synthetic_orbits.num_objects=2", "evaluation.steps=2", "multiview.size=[16,16]"]


@pytest.fixture(scope="module")
def multiview_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval_multiview")
    return run_dir, run_task("eval_multiview", run_dir, MULTIVIEW_FAST)


def test_multiview_scores_generated_orbits_against_the_synthetic_ground_truth(multiview_run):
    run_dir, results = multiview_run
    assert results["evaluation"] == "multiview" and results["num_objects"] == 2 and results["stage"] == "multiview"
    assert 0 < results["psnr"] < 100 and -1 <= results["clip_s"] <= 1 and results["lpips"] is None
    assert set(results["per_object"]) == {"object_000", "object_001"}
    assert results["cameras"] == {"object_000": "cameras.json", "object_001": "cameras.json"}
    assert results["comparable"] is False
    for reason in ("synthetic orbits (2 held-out objects, seed 1)", "random-init model",
                   "LPIPS switched off (no weights given)", "size=16x16 (paper: 576x576)"):
        assert reason in results["reason"]


def test_multiview_evaluates_a_multiview_checkpoint_trained_on_fewer_frames(tmp_path):
    """The tiny multiview stage trains on 7 views; its per-frame guidance ramp is stretched to the 21 generated."""
    small = ["train.height=16", "train.width=16"]
    one_object = ["evaluation.synthetic_orbits.num_objects=1", "evaluation.steps=2", "multiview.size=[16,16]"]
    checkpoint = save_stage_checkpoint("multiview", tmp_path / "mv.ckpt", *small)
    assert torch.load(checkpoint, weights_only=False)["hyper_parameters"]["stage"]["num_frames"] == 7
    results = run_task("eval_multiview", tmp_path / "run", [*one_object, f"model.checkpoint={checkpoint}"])
    assert results["model"] == str(checkpoint) and results["stage"] == "multiview"
    assert "random-init model" not in results["reason"] and 0 < results["psnr"] < 100
    image_to_video = save_stage_checkpoint("i2v", tmp_path / "i2v.ckpt", *small)
    results = run_task("eval_multiview", tmp_path / "i2v", [*one_object, f"model.checkpoint={image_to_video}"])
    assert results["stage"] == "image_to_video"
    text_to_video = save_stage_checkpoint("pretrain_video", tmp_path / "t2v.ckpt")
    with pytest.raises(UserError, match="evaluates a multiview or image_to_video stage"):
        run_task("eval_multiview", tmp_path / "t2v", [f"model.checkpoint={text_to_video}"])


def test_the_guidance_ramp_spans_the_generated_views():
    cfg = load_config("multiview", "tiny", [])
    stage = STAGES[cfg.train.name](stage=OmegaConf.to_container(cfg.train, resolve=True), seed=0)
    assert stage.diffusion.guider.num_frames == 7
    fit_guider_to_frames(stage, 21)
    scales = stage.diffusion.guider.frame_scales()
    assert len(scales) == 21 and scales[0] == pytest.approx(1.0) and scales[-1] == pytest.approx(2.5)


class RecordingStage:
    """Stands in for a stage: records what `generate` was given and returns a blank orbit."""

    device = "cpu"

    def __init__(self, name: str):
        self.hparams = SimpleNamespace(stage={"name": name})
        self.calls = []

    def generate(self, **inputs):
        self.calls.append(inputs)
        return torch.zeros(1, inputs["num_frames"], 16, 16, 3, dtype=torch.uint8)


def test_multiview_stage_gets_the_ground_truth_cameras(isolated_cache):
    root = ensure_orbits(OrbitSpec(num_objects=1, num_views=42, size=16, seed=3), isolated_cache)
    orbit = load_orbit(root / "object_000", background=255, elevation_deg=None)
    listed = json.loads((root / "object_000" / "cameras.json").read_text())["views"]
    assert orbit.views.shape == (21, 3, 16, 16) and orbit.cameras == "cameras.json"
    assert orbit.azimuth_rad.tolist() == pytest.approx([listed[2 * k]["azimuth_rad"] for k in range(21)])
    assert orbit.polar_rad.tolist() == pytest.approx([listed[0]["polar_rad"]] * 21)
    stage = RecordingStage("multiview")
    generated, truth = generate_orbit(stage, orbit, (16, 16), seed=5, steps=2, fps=7.0, motion_bucket_id=127)
    assert generated.shape == truth.shape == (1, 21, 3, 16, 16)
    call = stage.calls[0]
    assert torch.equal(call["azimuth_rad"], orbit.azimuth_rad[None]) and call["num_frames"] == 21
    assert torch.equal(call["polar_rad"], orbit.polar_rad[None]) and "fps" not in call
    assert torch.equal(call["images"], truth[0, :1].float() / 127.5 - 1.0)
    i2v = RecordingStage("image_to_video")
    generate_orbit(i2v, orbit, (16, 16), seed=5, steps=2, fps=7.0, motion_bucket_id=100)
    assert "azimuth_rad" not in i2v.calls[0] and i2v.calls[0]["motion_bucket_id"] == 100


def test_orbit_without_cameras_gets_even_azimuths_at_the_configured_elevation(tmp_path):
    for view in range(21):
        Image.fromarray(np.full((8, 8, 3), 10 * view, np.uint8)).save(tmp_path / f"{view:02d}.png")
    orbit = load_orbit(tmp_path, background=255, elevation_deg=20.0)
    assert [int(v[0, 0, 0]) for v in orbit.views] == [10 * k for k in range(21)]
    assert orbit.azimuth_rad[1].item() == pytest.approx(2 * math.pi / 21)
    assert orbit.polar_rad.tolist() == pytest.approx([math.radians(70.0)] * 21)
    assert load_orbit(tmp_path, background=255, elevation_deg=None).polar_rad is None


def test_report_renders_the_multiview_row(multiview_run, tmp_path):
    results = run_task("report", tmp_path, [f"runs={multiview_run[0]}"])
    table3 = results["table3"]["ours"]
    assert len(table3) == 1 and table3[0]["psnr"] == pytest.approx(multiview_run[1]["psnr"])
    markdown = (tmp_path / "results.md").read_text()
    assert "| **random-init multiview (tiny)** |" in markdown and "| SVD-MV | 0.14 | 16.83 | 0.89 | 50 |" in markdown
