"""eval_ucf101 and eval_multiview run end to end in the tiny profile, and `experiment=report` renders their rows."""

import json

import pytest

from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.run_context import create_run
from lightning_svd.tasks import get_task

UCF_FAST = ["evaluation.synthetic_ucf101.classes=2", "evaluation.synthetic_ucf101.videos_per_class=3",
            "evaluation.synthetic_ucf101.seconds=0.4", "ucf101.num_frames=8", "evaluation.steps=2",
            "evaluation.batch_size=3"]
MULTIVIEW_FAST = ["evaluation.synthetic_orbits.num_objects=2", "evaluation.steps=2"]


def run_task(experiment, run_dir, overrides, profile="tiny"):
    cfg = load_config(experiment, profile, [*overrides, f"run_dir={run_dir}"])
    ctx = create_run(cfg)
    try:
        return get_task(cfg.task)(cfg, ctx)
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def ucf_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval_ucf101")
    return run_dir, run_task("eval_ucf101", run_dir, UCF_FAST)


@pytest.fixture(scope="module")
def multiview_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval_multiview")
    return run_dir, run_task("eval_multiview", run_dir, MULTIVIEW_FAST)


def test_ucf101_runs_the_whole_protocol_on_the_synthetic_set(ucf_run):
    run_dir, results = ucf_run
    assert results["evaluation"] == "ucf101_fvd" and results["fvd"] >= 0
    assert results["num_samples"] == 6 and results["num_real"] == 6
    assert results["plan"]["per_class"] == {"PanRight": 3, "PanLeft": 3}
    assert results["comparable"] is False
    for reason in ("synthetic UCF-101", "random-init model", "random-init extractor", "num_frames=8"):
        assert reason in results["reason"]
    assert json.loads((run_dir / "results.json").read_text())["fvd"] == results["fvd"]
    clips = json.loads((run_dir / "real_clips.json").read_text())["clips"]
    assert len(clips) == 6 and clips[0]["frame_indices"] == list(range(8))
    assert clips[0]["timestamps"][1] == pytest.approx(0.04)
    samples = json.loads((run_dir / "samples.json").read_text())["samples"]
    assert [s["prompt"] for s in samples] == ["PanRight"] * 3 + ["PanLeft"] * 3


def test_ucf101_second_run_reuses_the_real_statistics_and_the_recorded_clips(ucf_run, tmp_path):
    first_dir, first = ucf_run
    again = run_task("eval_ucf101", tmp_path, UCF_FAST)
    assert again["real_statistics_cached"] is True and first["real_statistics_cached"] is False
    assert again["fvd"] == pytest.approx(first["fvd"])
    assert (json.loads((tmp_path / "real_clips.json").read_text())
            == json.loads((first_dir / "real_clips.json").read_text()))


def test_ucf101_tracking_count_keeps_class_proportions_and_says_so(tmp_path):
    results = run_task("eval_ucf101", tmp_path, [*UCF_FAST, "ucf101.num_samples=2"])
    assert results["num_samples"] == 2 and results["plan"]["per_class"] == {"PanRight": 1, "PanLeft": 1}
    assert "tracking only" in results["reason"]


def test_paper_profile_lists_the_missing_paths():
    with pytest.raises(UserError, match="model.checkpoint .*data.ucf101_root .*weights.i3d"):
        load_config("eval_ucf101", "paper")
    with pytest.raises(UserError, match="data.multiview_root"):
        load_config("eval_multiview", "paper")


def test_multiview_scores_generated_orbits_against_the_synthetic_ground_truth(multiview_run):
    run_dir, results = multiview_run
    assert results["evaluation"] == "multiview" and results["num_objects"] == 2
    assert 0 < results["psnr"] < 100 and -1 <= results["clip_s"] <= 1 and results["lpips"] is None
    assert set(results["per_object"]) == {"object_000", "object_001"}
    assert results["comparable"] is False
    for reason in ("synthetic orbits", "random-init model", "LPIPS or CLIP-S switched off"):
        assert reason in results["reason"]


def test_report_renders_both_rows(ucf_run, multiview_run, tmp_path):
    runs = f"runs=[{ucf_run[0]},{multiview_run[0]}]"
    results = run_task("report", tmp_path, [runs])
    table2, table3 = results["table2"]["ours"], results["table3"]["ours"]
    assert len(table2) == 1 and table2[0]["fvd"] == pytest.approx(ucf_run[1]["fvd"])
    assert len(table3) == 1 and table3[0]["psnr"] == pytest.approx(multiview_run[1]["psnr"])
    markdown = (tmp_path / "results.md").read_text()
    assert "random-init text_to_video (tiny)" in markdown and "random-init image_to_video (tiny)" in markdown
    assert "no: synthetic UCF-101" in markdown
