"""The ablation's parts without training: curated-vs-uncurated arms, seed statistics, honest notes, the plot."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from data_modules.arms import Arm, combined_filter
from lightning_svd.ablation.data import curation_arms
from lightning_svd.ablation.evaluate import (
    fvd_covariance_note,
    grain,
    prompt_colour_distances,
    prompt_following,
    sample_arm,
    shape_check,
)
from lightning_svd.ablation.job import SAMPLING, parent_threads, write_job
from lightning_svd.ablation.recipe import proxy_recipe
from lightning_svd.ablation.results import ArmResult, Spread
from lightning_svd.ablation.summary import honest_notes, sample_check_note, write_plot
from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.tasks import ablation


def scored_table(count: int = 40) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({
        "clip_id": [f"c{i:03d}" for i in range(count)], "status": ["ok"] * count,
        "aesthetic_score": rng.uniform(0, 10, count), "clip_score": rng.uniform(0, 1, count),
        "ocr_area": rng.uniform(0, 0.15, count), "flow_score": rng.uniform(0, 5, count),
    })


def test_curation_arms_are_the_combined_filter_and_a_random_subset_of_equal_size():
    table = scored_table()
    uncurated, curated = curation_arms(table, seed=0)
    kept = combined_filter(table).table
    assert curated.table["clip_id"].to_pylist() == kept["clip_id"].to_pylist()
    assert uncurated.num_clips == curated.num_clips == kept.num_rows < table.num_rows
    assert set(uncurated.table["clip_id"].to_pylist()) != set(curated.table["clip_id"].to_pylist())
    assert uncurated.removed_fraction == curated.removed_fraction == round(1 - kept.num_rows / 40, 6)


NOT_MEASURED = Spread()


def arm(name: str = "arm", removed: float = 0.0, fvd=NOT_MEASURED, final_loss=NOT_MEASURED, **more) -> ArmResult:
    return ArmResult(name, removed, 10, None, 2, final_loss=final_loss, fvd=fvd, **more)


def test_mean_and_spread_over_seeds():
    assert Spread.over([1.0, 3.0]) == Spread(2.0, round(float(np.std([1.0, 3.0], ddof=1)), 6))
    assert Spread.over([2.0, None]) == Spread(2.0, None)
    assert Spread.over([None]) == Spread(None, None)


def test_notes_say_when_a_move_is_not_monotonic_or_within_the_seed_spread():
    arms = [arm(fvd=Spread(3.0, 1.0), final_loss=Spread(0.5, 0.01), degraded_share=0.4),
            arm(fvd=Spread(2.0, 1.0), final_loss=Spread(0.4, 0.01), degraded_share=0.2),
            arm(fvd=Spread(2.5, 1.0), final_loss=Spread(0.3, 0.01), degraded_share=0.1)]
    notes = honest_notes(arms, extractor_comparable=False, extractor_reason="random weights")
    assert any(n.startswith("As the removed fraction grows, FVD does not move monotonically") and "is within" in n
               for n in notes)
    assert any("final training loss (mean over the last 20 % of steps) falls monotonically" in n and "exceeds" in n
               for n in notes)
    assert any("degraded clips in the training data falls monotonically" in n for n in notes)
    assert notes[-1].startswith("FVD features: random weights")
    arms = [arm(degraded_share=0.36)] * 2
    same_clips = honest_notes(arms, True, None, "Across the arms")
    assert same_clips == ["Across the arms, the share of planted-degraded clips in the training data is the same in "
                          "every arm (0.36, 0.36)."]


def test_the_plot_has_error_bars_and_handles_arms_of_equal_size(tmp_path):
    arms = [arm(name, 0.5, fvd=Spread(fvd, 0.3)) for name, fvd in (("uncurated", 2.0), ("curated", 1.0))]
    image = Image.open(write_plot(arms, tmp_path / "plot.png"))
    pixels = np.asarray(image.convert("RGB"))
    assert image.size == (1080, 360) and (np.abs(pixels - [40, 90, 200]).sum(axis=2) == 0).sum() > 50


def test_every_ablation_experiment_loads_with_its_criterion():
    for criterion in ("aesthetic", "clip", "ocr", "flow", "curation"):
        cfg = load_config(f"ablation_{criterion}", "tiny")
        assert cfg.task == "ablation" and cfg.ablation.criterion == criterion
        paper = load_config(f"ablation_{criterion}", "paper", check_paths=False)
        assert paper.ablation.proxy is None and paper.ablation.prompts.count == 64  # the paper's recipe as it is
        assert paper.ablation.sampling.steps == 50 and "ablation.fvd.i3d_torchscript.path" in paper.requires_paths


def test_final_loss_is_the_mean_over_the_last_fifth_of_the_logged_steps(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from lightning_svd.ablation.summary import final_logged_mean

    writer = SummaryWriter(str(tmp_path))
    for step in range(0, 101, 10):
        writer.add_scalar("train/loss", 1.0 if step < 80 else step / 100, step)
    writer.close()
    assert final_logged_mean(tmp_path, "train/loss") == pytest.approx((0.8 + 0.9 + 1.0) / 3)
    assert final_logged_mean(tmp_path, "train/other") is None and final_logged_mean(tmp_path / "no", "x") is None


def test_every_arm_starts_from_the_image_model_unless_switched_off(tmp_path):
    image_model = tmp_path / "image.ckpt"
    image_model.touch()
    cfg = load_config("ablation_aesthetic", "tiny", [f"ablation.image_init.checkpoint={image_model}"])
    arms, used = ablation.build_arms(cfg, None, scored_table())
    assert used == str(image_model) and len(arms) == 4
    assert all(arm.proxy_overrides[0] == f"init_from={image_model}" for arm in arms)
    cfg.ablation.image_init.every_arm = False
    arms, used = ablation.build_arms(cfg, None, scored_table())
    assert used is None and all(not arm.proxy_overrides for arm in arms)


@pytest.mark.parametrize(("extra", "message"), [
    ("train.foo=1", "unknown key 'train.foo' for experiment ablation_proxy"),
    ("train.diffusion.shared_frame_noise=1", "diffusion.shared_frame_noise must be in \\[0, 1\\)"),
])
def test_a_bad_proxy_setting_fails_before_the_curation_starts(extra, message):
    cfg = load_config("ablation_aesthetic", "tiny", [f"ablation.extra_proxy_overrides=[{extra}]"])
    with pytest.raises(UserError, match=message):
        ablation.check(cfg)


@pytest.mark.parametrize(("override", "message"), [
    ("ablation.fvd.extractor=bogus", "unknown ablation.fvd.extractor 'bogus'; valid: domain, random"),
    ("ablation.image_init.data=bogus", "ablation.image_init.data='bogus'; choose one of corpus, subset"),
])
def test_a_bad_choice_fails_before_the_curation_starts(override, message):
    with pytest.raises(UserError, match=message):
        ablation.check(load_config("ablation_aesthetic", "tiny", [override]))


def test_paper_proxies_need_the_image_model_they_start_from():
    cfg = load_config("ablation_aesthetic", "paper", check_paths=False)
    with pytest.raises(UserError, match="ablation.image_init.checkpoint"):
        ablation.check(cfg)
    cfg.ablation.image_init.every_arm = False
    ablation.check(cfg)


def test_a_paper_ablation_asks_for_its_curations_weights_up_front_unless_given_a_clip_table(tmp_path):
    """The ablation curates with the paper's curation (three captioners, CLIP, LAION): their paths come in the same
    message as the ablation's own, under the override list that sets them; a curated table needs none of them."""
    with pytest.raises(UserError) as error:
        load_config("ablation_clip", "paper")
    message = str(error.value)
    curation_keys = ["curation.clip.weights", "curation.aesthetic.laion.weights", "curation.captions.coca.weights",
                     "curation.captions.vblip.model", "curation.captions.llm.model"]
    assert all(f"ablation.curation_overrides: {key} (not set)" in message for key in curation_keys)
    assert message.count("data.source") == 1 and "ablation.prompts.file (not set)" in message
    assert "ablation.curation_overrides=[KEY=PATH, ...]" in message and "\n" not in message
    with pytest.raises(UserError) as error:
        load_config("ablation_clip", "paper", [f"ablation.clip_table={tmp_path}"])
    assert "curation" not in str(error.value) and "missing 6:" in str(error.value)
    assert "ablation.extra_proxy_overrides: train.autoencoder.weights (not set)" in str(error.value)


def test_samples_that_follow_their_prompts_sit_nearer_their_own_prompts_clip():
    clips = np.zeros((2, 4, 2, 2, 3), np.uint8)
    clips[1] = 100
    following = np.concatenate([clips, clips])  # prompt-major per repetition: p0, p1, p0, p1
    assert prompt_colour_distances(following, clips) == (0.0, pytest.approx(100 * 3 ** 0.5))
    swapped = following[[1, 0, 3, 2]]
    assert prompt_colour_distances(swapped, clips) == (pytest.approx(100 * 3 ** 0.5), 0.0)
    assert prompt_colour_distances(clips[:1], clips[:1]) == (0.0, None)
    assert prompt_following(following, clips) == 1.0 and prompt_following(swapped, clips) == 0.0
    assert prompt_following(following[[0, 1, 2, 2]], clips) == 0.75 and prompt_following(clips[:1], clips[:1]) is None


def test_fvd_warns_when_a_side_has_no_more_videos_than_feature_dimensions():
    """The paper profile's first draft compared 2,048 samples with 64 real videos in 400-d I3D features."""
    note = fvd_covariance_note(real=64, generated=2048, dims=400)
    assert note.startswith("FVD compares 64 real videos in 400-d features") and "rank-deficient" in note
    assert "generated" not in note.split(":")[0]
    assert "18 generated" in fvd_covariance_note(real=500, generated=18, dims=64)
    assert fvd_covariance_note(real=2048, generated=2048, dims=400) is None
    paper = load_config("ablation_aesthetic", "paper", check_paths=False).ablation
    real = paper.heldout.max_clips * paper.heldout.windows_per_clip
    assert fvd_covariance_note(real, paper.prompts.count * paper.sampling.samples_per_prompt, 400) is None


def test_arms_smaller_than_a_batch_all_train_with_the_smallest_arms_size():
    table = scored_table(10)
    arms = [Arm("big", "aesthetic", 0.0, None, table), Arm("small", "aesthetic", 0.7, 1.0, table.slice(0, 3))]
    fitted, note = ablation.fit_batch_to_arms(arms, batch_size=8)
    assert [arm.proxy_overrides for arm in fitted] == [("train.data.batch_size=3",)] * 2
    assert "batch 3, not 8" in note
    assert ablation.fit_batch_to_arms(arms, batch_size=3) == (arms, None)
    with pytest.raises(UserError, match="arm\\(s\\) empty have no clips"):
        ablation.fit_batch_to_arms([*arms, Arm("empty", "aesthetic", 1.0, 9.0, table.slice(0, 0))], batch_size=8)


def test_a_failed_job_is_reported_with_its_last_line_and_log_and_stops_new_ones(tmp_path):
    jobs = [(f"arm seed {seed}", tmp_path / f"job{seed}") for seed in range(2)]
    for _, out in jobs:
        out.mkdir()
    with pytest.raises(UserError, match="ablation jobs failed: arm seed 0 \\(FileNotFoundError: .+sampling.json'; "
                                        "see .*job0/worker.log\\)"):
        ablation.run_in_workers(jobs, parallel=1, log=logging.getLogger("test"))
    assert not (tmp_path / "job1" / "worker.log").exists()


def test_a_worker_that_dies_is_a_failed_job_not_a_hang(tmp_path, monkeypatch):
    dying = tmp_path / "dying_python"
    dying.write_text("#!/bin/sh\nexit 1\n")
    dying.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(dying))
    (tmp_path / "job").mkdir()
    with pytest.raises(UserError, match="arm seed 0 \\(the worker stopped before writing its log; see"):
        ablation.run_in_workers([("arm seed 0", tmp_path / "job")], parallel=1, log=logging.getLogger("test"))


def test_a_worker_runs_job_after_job_each_with_its_own_log(tmp_path):
    folders = [tmp_path / "a", tmp_path / "b"]
    for out in folders:
        out.mkdir()
    worker = subprocess.run([sys.executable, "-m", "lightning_svd.ablation.job"], input="\n".join(
        f"{out}\n" for out in folders), capture_output=True, text=True, cwd=Path(__file__).parents[2], check=True)
    assert worker.stdout == "failed\nfailed\n"  # one reply per job (blank lines are not jobs), the rest in logs
    for out in folders:
        assert str(out / "sampling.json") in (out / "worker.log").read_text().splitlines()[-1]


def test_your_proxy_settings_go_after_the_recipe(tmp_path):
    cfg = load_config("ablation_aesthetic", "tiny", ["ablation.extra_proxy_overrides=[trainer.max_steps=7]"])
    proxy = ablation.proxy_config(cfg, tmp_path / "clips.parquet", 0, tmp_path / "run")
    assert proxy.trainer.max_steps == 7 and proxy.train.num_frames == 4  # the recipe's other settings stay


def test_a_recipe_value_changes_from_the_command_line_with_its_type_checked(tmp_path):
    cfg = load_config("ablation_aesthetic", "tiny", ["ablation.proxy.trainer.max_steps=9"])
    assert ablation.proxy_config(cfg, tmp_path / "clips.parquet", 0, tmp_path / "run").trainer.max_steps == 9
    with pytest.raises(UserError, match="ablation.proxy.trainer.max_steps expects an integer, got 'many'"):
        load_config("ablation_aesthetic", "tiny", ["ablation.proxy.trainer.max_steps=many"])


@pytest.mark.parametrize(("block", "key", "message"), [
    ("proxy", "train.foo", "ablation.proxy: unknown key 'train.foo' for experiment ablation_proxy"),
    ("image_init.pretrain", "trainer.max_stepz", "ablation.image_init.pretrain: unknown key 'trainer.max_stepz' for "
                                                 "experiment ablation_proxy; did you mean 'trainer.max_steps'?"),
])
def test_a_recipe_block_with_an_unknown_key_fails_the_check_in_one_line(block, key, message):
    cfg = load_config("ablation_aesthetic", "tiny")
    OmegaConf.update(cfg, f"ablation.{block}.{key}", 1, force_add=True)  # as a YAML file could set it
    with pytest.raises(UserError, match=message) as error:
        ablation.check(cfg)
    assert "\n" not in str(error.value)


def test_sample_check_says_whether_samples_flicker_hold_together_or_stand_still():
    assert sample_check_note([20.9, 21.5], 6.3, 0).endswith("samples far above the real clips flicker, and their "
                                                            "FVD says little about the arms.")
    held = sample_check_note([6.6, 7.1], 6.3, 0)
    assert held == ("Sample check: consecutive frames of the seed-0 samples differ by 6.6-7.1 (mean |change|, 0-255), "
                    "the real clips by 6.3; the samples hold together over time about as much as the real clips.")
    assert sample_check_note([1.0, 2.0], 6.3, 1).endswith("samples far below the real clips barely move.")


def test_recipe_blocks_each_add_their_unet_options():
    """`train.unet.options` is free-form: the arms' block sets attention, the image model's block adds temporal."""
    cfg = load_config("ablation_aesthetic", "tiny")
    assert dict(proxy_recipe(cfg).train.unet.options) == {"attention_levels": []}
    assert dict(proxy_recipe(cfg, image=True).train.unet.options) == {"attention_levels": [], "temporal": False}


def test_grain_is_near_zero_on_flat_frames_and_grows_with_pixel_noise():
    rng = np.random.default_rng(0)
    flat = np.full((2, 3, 16, 16, 3), 120, dtype=np.uint8)
    noisy = np.clip(flat + rng.normal(0.0, 20.0, flat.shape), 0, 255).astype(np.uint8)
    assert grain(flat).tolist() == [0.0, 0.0]
    assert (grain(noisy) > 10.0).all()


class RecordingStage(torch.nn.Module):
    """Stands in for a trained stage: records whether bfloat16 autocast was on when it sampled."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.autocast = []

    def generate(self, prompts, seed, num_frames, steps):
        self.autocast.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return torch.zeros(len(prompts), num_frames, 2, 2, 3, dtype=torch.uint8)


def test_proxies_sample_in_the_precision_they_trained_in(tmp_path):
    cfg = load_config("ablation_aesthetic", "tiny")
    assert proxy_recipe(cfg).trainer.precision == "bf16-mixed"
    assert proxy_recipe(cfg, image=True).trainer.precision == "bf16-mixed"  # the image model too
    write_job(tmp_path, proxy_recipe(cfg), [{"id": "p0", "text": "a red textured background"}], 2, 3, 1)
    precision = json.loads((tmp_path / SAMPLING).read_text())["precision"]
    stage = RecordingStage()
    videos = sample_arm(stage, [{"text": "a"}, {"text": "b"}], 3, 0, 1, 2, precision)
    sample_arm(stage, [{"text": "a"}], 1, 0, 1, 2, "32-true")
    assert videos.shape == (6, 1, 2, 2, 3) and stage.autocast == [True, False]
    assert not torch.is_autocast_enabled("cpu")  # switched off again after sampling


def test_the_ablation_process_uses_every_workers_threads_for_the_work_it_does_alone():
    section = load_config("ablation_aesthetic", "tiny").ablation
    assert (section.torch_threads, section.parallel_jobs) == (1, 2) and parent_threads(section) == 2
    assert parent_threads(OmegaConf.create({"torch_threads": 1, "parallel_jobs": 1})) == 1  # it trains in-process
    assert parent_threads(OmegaConf.create({"torch_threads": None, "parallel_jobs": 2})) is None  # torch's default


def scene(background, shape_colour=None, at=(10, 10), size=5):
    """A (2, 32, 32, 3) clip: a flat background with a square of `shape_colour` in both frames."""
    frames = np.empty((2, 32, 32, 3), np.uint8)
    frames[:] = background
    if shape_colour is not None:
        frames[:, at[0]:at[0] + size, at[1]:at[1] + size] = shape_colour
    return frames


def test_the_shape_check_sees_samples_draw_their_prompts_shape_colours_not_just_any_blob():
    teal, yellow, pink, orange = (30, 160, 160), (235, 215, 40), (230, 110, 170), (240, 140, 30)
    clips = np.stack([scene(teal, yellow), scene(pink, orange, at=(20, 4))])
    drawn = np.stack([scene(teal, yellow, at=(3, 20)), scene(pink, orange)])  # the shapes, anywhere in the frame
    assert shape_check(drawn, clips) == (1.0, 0.0)
    swapped = np.stack([scene(teal, orange), scene(pink, yellow)])  # shapes in the other prompt's colour
    assert shape_check(swapped, clips) == (0.0, 1.0)
    no_shapes = np.stack([scene(teal), scene(pink)])
    speck = np.stack([scene(teal, yellow, size=2), scene(pink, orange, size=2)])  # 4 pixels: smaller than a shape
    assert shape_check(no_shapes, clips) == (0.0, 0.0) and shape_check(speck, clips) == (0.0, 0.0)
    assert shape_check(drawn, np.stack([scene(teal), scene(pink, orange)])) is None  # a prompt clip without shapes
    assert shape_check(drawn[:1], clips[:1]) is None  # one prompt: no other prompts to compare with
