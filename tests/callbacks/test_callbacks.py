"""Each callback inside a tiny `Trainer.fit` (through the train task) leaves what it promises."""

import json
import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import event_accumulator

from callbacks import build_callbacks, extractor_from_section
from callbacks.samples import frame_grid
from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.evaluation.frechet import FeatureStatistics
from lightning_svd.preference.pack import StudyPack
from lightning_svd.video import read_frames


def events(run_dir):
    files = sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert files, "no TensorBoard event file"
    accumulator = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    accumulator.Reload()
    return accumulator


def test_fvd_is_evaluated_every_n_steps_and_at_the_end(callback_run):
    run_dir, results = callback_run
    history = json.loads((run_dir / "fvd_history.json").read_text())
    assert [entry["step"] for entry in history["history"]] == [2, 3]
    assert all(math.isfinite(entry["fvd"]) and entry["fvd"] >= 0 for entry in history["history"])
    assert history["history"][0]["num_real"] == 3 and history["history"][0]["num_fake"] == 3
    assert history["comparable"] is False and "random" in history["reason"]
    assert results["fvd"] == history["history"][-1]["fvd"]
    assert json.loads((run_dir / "results.json").read_text())["fvd_history"] == history["history"]
    scalars = events(run_dir).Scalars("eval/fvd")
    assert [s.step for s in scalars] == [2, 3]


def test_metric_and_extractor_stay_out_of_the_checkpoint(callback_run):
    run_dir, _ = callback_run
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert not any("extractor" in key or "metric" in key for key in checkpoint["state_dict"])
    assert not any("FVD" in key for key in checkpoint.get("callbacks", {}))


def test_real_statistics_are_cached(callback_run, isolated_cache):
    run_dir, _ = callback_run
    protocol = json.loads((run_dir / "fvd_history.json").read_text())["protocol"]
    stored = [FeatureStatistics.load(path)[1]["protocol"] for path in (isolated_cache / "fvd_stats").glob("*.npz")]
    assert stored.count(protocol) == 1


def test_samples_reach_tensorboard_as_images_and_the_run_dir_as_mp4(callback_run):
    run_dir, results = callback_run
    images = events(run_dir).Images("samples/frames")
    assert {image.step for image in images} == {2}
    assert len(images) == 1 and (images[0].width, images[0].height) == (2 * 16, 2 * 16)
    videos = sorted((run_dir / "samples" / "step_000002").glob("sample_*.mp4"))
    assert len(videos) == 2 and results["sample_videos"] == [str(v) for v in videos]
    assert read_frames(videos[0]).shape == (2, 16, 16, 3)


def test_preference_samples_form_a_study_pack(callback_run):
    run_dir, results = callback_run
    pack = StudyPack.load(run_dir / "study")
    assert pack.arms == ("tiny_arm@step2", "tiny_arm@step3")
    assert [p.text for p in pack.prompts] == ["a red circle", "two blue squares"]
    assert len(pack.videos) == 4 and results["study_pack"] == str(run_dir / "study")
    video = pack.videos[("tiny_arm@step3", "p001")]
    assert read_frames(video.path).shape == (2, 16, 16, 3)


def test_hyperparameters_are_logged_with_the_final_metrics(callback_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    accumulator = events(run_dir := callback_run[0])
    content = accumulator.PluginTagToContent("hparams")
    assert content, f"no hparams plugin data in {run_dir}"
    experiment = None
    for raw in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.HasField("experiment"):
            experiment = data.experiment
    assert experiment is not None
    metric_tags = {info.name.tag for info in experiment.metric_infos}
    assert {"hparams/final_loss", "hparams/fvd", "hparams/steps"} <= metric_tags
    hparam_names = {info.name for info in experiment.hparam_infos}
    assert {"train/optimizer/lr", "seed", "train/num_frames"} <= hparam_names
    assert accumulator.Scalars("hparams/fvd")[0].value == pytest.approx(callback_run[1]["fvd"], rel=1e-5)


def test_frame_grid_has_one_row_per_video_and_frames_left_to_right():
    videos = torch.arange(2 * 3 * 3 * 2 * 2, dtype=torch.uint8).reshape(2, 3, 3, 2, 2)
    grid = frame_grid(videos)
    assert grid.shape == (3, 4, 6)
    assert torch.equal(grid[:, 2:4, 4:6], videos[1, 2])
    assert torch.equal(grid[:, 0:2, 2:4], videos[0, 1])


def test_defaults_build_only_the_cheap_callbacks():
    cfg = load_config("pretrain_video", "tiny", [])
    names = [type(c).__name__ for c in build_callbacks(cfg, "unused")]
    assert names == ["SampleLogging", "HParamsLogging"]


def test_extractor_section_names_an_unknown_kind():
    with pytest.raises(UserError, match="choose one of random"):
        extractor_from_section({"kind": "inception", "random": {"num_features": 8, "size": 16, "seed": 0}})
    extractor = extractor_from_section({"kind": "random", "random": {"num_features": 8, "size": 16, "seed": 0}})
    assert extractor(torch.zeros(1, 2, 3, 16, 16, dtype=torch.uint8)).shape == (1, 8)
    assert np.isfinite(extractor(torch.zeros(1, 2, 3, 16, 16, dtype=torch.uint8)).numpy()).all()
