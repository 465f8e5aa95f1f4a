"""The `ablation` task end to end on a small corpus: contract, study pack, HParams, resume, degraded share."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_modules.arms import threshold_arms
from lightning_svd import training
from lightning_svd.ablation.data import GroundTruth
from lightning_svd.clip_table import read_clip_table
from lightning_svd.config import load_config
from lightning_svd.preference.pack import StudyPack
from lightning_svd.preference.service import PreferenceStudy
from lightning_svd.preference.settings import StudySettings
from lightning_svd.preference.store import Task, Vote
from lightning_svd.run_context import create_run
from lightning_svd.tasks import ablation

SPEC_ARM_KEYS = {"name", "removed_fraction", "num_clips", "threshold", "train_steps", "final_loss", "fvd"}
OVERRIDES = [
    "corpus.num_videos=8", "corpus.min_seconds=4.0", "corpus.max_seconds=5.0", "corpus.seed=3",
    "corpus.degraded_fraction=0.4", "ablation.image_init.corpus.num_videos=8",
    "ablation.curation_overrides=[curation.clip.enabled=false, curation.ocr.backend=none, curation.workers=1]",
    "ablation.removed_fractions=[0.0, 0.5]", "ablation.heldout.video_fraction=0.4",
    "ablation.prompts.count=2", "ablation.sampling.steps=2", "ablation.sampling.samples_per_prompt=2",
    "ablation.parallel_jobs=1", "ablation.judge.steps=40",
]
TWO_STEPS = ["trainer.max_steps=2", "trainer.log_every_n_steps=1", "train.data.batch_size=2"]


def run_ablation(run_dir: Path, experiment: str = "ablation_aesthetic", *extra: str) -> dict:
    cfg = load_config(experiment, "tiny", [f"run_dir={run_dir}", *OVERRIDES, *extra])
    cfg.ablation.extra_proxy_overrides.extend(TWO_STEPS)
    with create_run(cfg) as ctx:
        return ablation.run(cfg, ctx)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ablation") / "run"
    return run_dir, run_ablation(run_dir)


def test_results_follow_the_spec_contract(finished):
    run_dir, results = finished
    stored = json.loads((run_dir / "results.json").read_text())
    assert stored["experiment"] == "ablation_aesthetic" and stored["criterion"] == "aesthetic"
    assert stored["profile"] == "tiny" and stored["feature_extractor"]["kind"] == "domain"
    assert isinstance(stored["notes"], str) and "rank these arms against each other only" in stored["notes"]
    assert [a["removed_fraction"] for a in stored["arms"]] == [0.0, 0.5]
    first, second = stored["arms"]
    for arm in stored["arms"]:
        assert set(arm) >= SPEC_ARM_KEYS
        assert arm["train_steps"] == 2 and np.isfinite(arm["fvd"]) and arm["fvd"] >= 0
        assert all(np.isfinite(s["final_loss"]) for s in arm["seeds"])
        assert 0 <= arm["sample_frame_difference"] <= 255
        assert 0 <= arm["prompt_colour_distance"] <= 442 and 0 <= arm["other_prompts_colour_distance"] <= 442
        assert 0 <= arm["prompt_following"] <= 1
        if arm["prompt_shapes"] is not None:  # None where a prompt's clip shows no shape (text only, say)
            assert 0 <= arm["prompt_shapes"] <= 1 and 0 <= arm["other_prompts_shapes"] <= 1
        assert [s["seed"] for s in arm["seeds"]] == [0, 1] and arm["fvd_spread"] is not None
        assert 0.0 <= arm["degraded_share"] <= 1.0
        assert 0.0 <= arm["degraded_sample_share"] <= 1.0 and arm["degraded_sample_share_spread"] is not None
        assert np.isfinite(arm["simulated_elo_gain"])
        assert all(np.isfinite(seed["simulated_elo_gain"]) for seed in arm["seeds"])
    assert min(a["simulated_elo_gain"] for a in stored["arms"]) >= 0
    assert stored["judge"]["num_heldout"] > 0 and "degradation" in stored["judge"]["heldout_accuracy"]
    assert stored["simulated_raters"]["label"] == "simulated raters"
    assert second["num_clips"] == first["num_clips"] - int(np.floor(0.5 * first["num_clips"] + 0.5))
    assert first["threshold"] is None and second["threshold"] is not None
    markdown = (run_dir / "results.md").read_text()
    assert all(f"| {a['name']} |" in markdown for a in stored["arms"])
    assert "\n- As the removed fraction grows, the share of planted-degraded clips" in markdown
    assert "Elo gain, simulated raters" in markdown and "comes from simulated raters (no person voted)" in markdown
    assert "- Sample check: consecutive frames" in markdown and "- Prompt check: the samples' mean colours" in markdown
    assert (run_dir / "ablation.png").stat().st_size > 0


def test_every_arm_seed_starts_from_the_cached_image_model(finished):
    run_dir, results = finished
    image_model = Path(results["image_model"])
    assert (image_model.parents[1] / "results.json").is_file() and run_dir not in image_model.parents
    for arm in results["arms"]:
        for seed in (0, 1):
            job = json.loads((run_dir / "arms" / arm["name"] / f"seed{seed}" / "results.json").read_text())
            assert job["init_from"] == str(image_model)


def test_the_sample_grid_shows_the_real_clips_over_one_sample_per_prompt_and_arm(finished):
    run_dir, results = finished
    grid = np.asarray(Image.open(run_dir / results["sample_grid"]).convert("RGB"))
    proxy, scale, gap, left = results["proxy"], 4, 6, 210
    height, strip = proxy["height"], proxy["num_frames"] * proxy["width"]
    assert grid.shape[0] == (1 + len(results["arms"])) * (height * scale + gap) + gap

    def cell(row: int) -> np.ndarray:
        top = gap + row * (height * scale + gap)
        return grid[top:top + height * scale:scale, left:left + strip * scale:scale]

    first_arm = results["arms"][0]["name"]
    sample = np.load(run_dir / "arms" / first_arm / "seed0" / "samples.npy")[0]
    assert np.array_equal(cell(1), np.concatenate(list(sample), axis=1))
    assert cell(0).std() > 0 and not np.array_equal(cell(0), cell(1))
    assert f"![Samples per arm]({results['sample_grid']})" in (run_dir / "results.md").read_text()


def test_held_out_real_clips_are_never_trained_on(finished):
    run_dir, results = finished
    held = set(results["heldout_videos"])
    for arm in results["arms"]:
        trained = set(read_clip_table(run_dir / "arms" / arm["name"] / "clips.parquet")["video_path"].to_pylist())
        assert held and not trained & held


def test_the_study_pack_holds_every_sample_the_numbers_were_computed_on(finished):
    """2 prompts x 2 samples x 2 seeds: one pack prompt per sample, each video naming its seed and sample, and its
    frames those of the arm-seed's samples.npy."""
    run_dir, results = finished
    pack = StudyPack.load(run_dir / "study")
    assert list(pack.arms) == [a["name"] for a in results["arms"]]
    texts = [p["text"] for p in results["prompts"]]
    assert [p.text for p in pack.prompts] == texts * 4
    assert {(v.seed, v.sample) for v in pack.videos.values()} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    video = pack.videos[(pack.arms[0], f"{results['prompts'][1]['id']}-s1-k1")]
    assert (video.seed, video.sample) == (1, 1)
    assert (pack.root / "simulated_votes.sqlite").is_file() and not (pack.root / "votes.sqlite").exists()


def test_hparams_are_written_once_per_arm(finished):
    run_dir, results = finished
    for arm in results["arms"]:
        events = list((run_dir / "tensorboard" / arm["name"]).glob("events.out.tfevents.*"))
        assert events and b"hparams" in events[0].read_bytes()


def test_an_interrupted_ablation_retrains_only_the_unfinished_arm_seed(finished, monkeypatch):
    run_dir, before = finished
    unfinished = run_dir / "arms" / before["arms"][1]["name"] / "seed1"
    for left_by_a_finished_job in ("done.json", "trained.json", "samples.npy"):
        (unfinished / left_by_a_finished_job).unlink()
    calls = []
    original = training.train

    def counting(cfg, ctx, callbacks=()):
        calls.append(Path(ctx.run_dir))
        return original(cfg, ctx, callbacks)

    monkeypatch.setattr(training, "train", counting)
    after = run_ablation(run_dir)
    assert calls == [unfinished]
    record = json.loads((unfinished / "done.json").read_text())
    assert record["resumed_from"] and record["train_steps"] == 2 and np.isfinite(record["final_loss"])
    assert after["arms"][0] == before["arms"][0]


def test_the_degraded_share_falls_as_the_aesthetic_arms_remove_more(finished):
    run_dir, results = finished
    pool = read_clip_table(Path(results["clip_table"]))
    shares = [GroundTruth().degraded_share(arm.table) for arm in threshold_arms(pool, "aesthetic")]
    assert shares[0] > 0 and all(b <= a for a, b in zip(shares, shares[1:], strict=False))
    assert shares[-1] < shares[0]
    assert results["arms"][1]["degraded_share"] < results["arms"][0]["degraded_share"]


def test_votes_in_the_study_pack_join_the_table_as_elo(finished):
    run_dir, before = finished
    pack = StudyPack.load(run_dir / "study")
    study = PreferenceStudy.open(pack, pack.root / "votes.sqlite", StudySettings())
    best, worst = pack.arms[1], pack.arms[0]
    study.store.import_votes([
        Vote(rater, Task.of(prompt.id, best, worst, "quality"), best, worst, "left", best, worst, None, "test",
             None, time.time())
        for rater in ("r1", "r2", "r3") for prompt in pack.prompts])
    after = run_ablation(run_dir)
    elo = {arm["name"]: arm["elo"] for arm in after["arms"]}
    assert elo[best] > elo[worst]
    assert "| –" not in (run_dir / "results.md").read_text().splitlines()[4].rsplit("|", 2)[1]
