"""Each callback inside a tiny `Trainer.fit` (through the train task) leaves what it promises."""

import io
import json
import math

import av
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

from callbacks import build_callbacks, extractor_from_section
from callbacks.reference import ReferenceClips, generate_batched, generation_inputs, reference_clips
from callbacks.samples import animated_gif, frame_grid
from data_modules.multiview import multiview_datamodule
from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.evaluation.frechet import FeatureStatistics
from lightning_svd.preference.pack import StudyPack
from lightning_svd.stages import STAGES
from lightning_svd.video import read_frames


def events(run_dir):
    files = sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert files, "no TensorBoard event file"
    accumulator = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"),
                                                     size_guidance={"images": 0, "tensors": 0})
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
    accumulator = events(run_dir)
    assert [s.step for s in accumulator.Scalars("eval/fvd")] == [2, 3]
    note = accumulator.Tensors("eval/fvd_features/text_summary")
    assert len(note) == 1 and note[0].tensor_proto.string_val[0].decode().startswith(
        "not comparable: random-init extractor; features {")


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
    accumulator = events(run_dir)
    images = accumulator.Images("samples/frames")
    assert {image.step for image in images} == {2}
    assert len(images) == 1 and (images[0].width, images[0].height) == (2 * 16, 2 * 16)
    animations = accumulator.Images("samples/video")
    assert [a.step for a in animations] == [2] and animations[0].encoded_image_string[:6] == b"GIF89a"
    with Image.open(io.BytesIO(animations[0].encoded_image_string)) as gif:
        assert gif.n_frames == 2 and gif.size == (16, 2 * 16) and gif.info["loop"] == 0
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
    for entry in pack.videos.values():
        with av.open(str(entry.path)) as container:
            assert container.streams.video[0].codec_context.name == "h264"


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


def tiny_stage(experiment: str, *overrides: str):
    cfg = load_config(experiment, "tiny", ["train.height=16", "train.width=16", "train.num_frames=3", *overrides])
    torch.manual_seed(0)
    return cfg, STAGES[cfg.train.name](stage=OmegaConf.to_container(cfg.train, resolve=True), seed=0)


def test_callbacks_sample_from_the_ema_weights():
    _, stage = tiny_stage("pretrain_video")
    with torch.no_grad():
        for parameter in stage.ema.named_parameters().values():
            parameter.add_(torch.randn_like(parameter))  # raw weights now differ from the average
    from_callback = generate_batched(stage, ["a red circle"], None, seed=3, batch_size=1, steps=2)
    raw = stage.ema
    stage.ema = None
    from_raw_weights = generate_batched(stage, ["a red circle"], None, seed=3, batch_size=1, steps=2)
    with torch.no_grad():
        for name, parameter in raw.named_parameters().items():
            parameter.copy_(raw.shadow[name])
    from_average = generate_batched(stage, ["a red circle"], None, seed=3, batch_size=1, steps=2)
    assert torch.equal(from_callback, from_average) and not torch.equal(from_callback, from_raw_weights)


def test_multiview_stage_samples_at_the_reference_orbits_cameras(isolated_cache):
    cfg, stage = tiny_stage("multiview", "orbits.num_objects=2", "orbits.size=16")
    references = reference_clips(multiview_datamodule(cfg), 2)
    assert set(references.cameras) == {"azimuth_rad", "polar_rad"} and references.cameras["polar_rad"].shape == (2, 3)
    inputs = generation_inputs(stage, references.select(slice(1, 2)), ["ignored"])
    assert torch.equal(inputs["azimuth_rad"], references.cameras["azimuth_rad"][1:2])
    assert torch.equal(inputs["images"], references.videos[1:2, 0].float())
    videos = generate_batched(stage, ["", ""], references, seed=0, batch_size=1, steps=2)
    assert videos.shape == (2, 3, 3, 16, 16) and videos.dtype == torch.uint8
    without = ReferenceClips(references.videos, references.captions, references.clip_ids)
    with pytest.raises(ValueError, match="cameras"):
        generation_inputs(stage, without, ["x"])


def test_animated_gif_stacks_the_videos_and_keeps_every_frame():
    videos = torch.zeros(2, 3, 3, 4, 6, dtype=torch.uint8)
    for frame in range(3):
        videos[0, frame] = 80 * frame
        videos[1, frame, 1] = 255
    with Image.open(io.BytesIO(animated_gif(videos, fps=5))) as gif:
        assert gif.n_frames == 3 and gif.size == (6, 8) and gif.info["duration"] == 200
        gif.seek(2)
        frame = np.asarray(gif.convert("RGB"))
    assert frame[0, 0].tolist() == [160, 160, 160] and frame[5, 0].tolist() == [0, 255, 0]
