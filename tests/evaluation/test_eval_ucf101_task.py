"""eval_ucf101 runs the whole protocol end to end in the tiny profile, and `experiment=report` renders its row."""

import json

import pytest
from task_runs import run_task, save_stage_checkpoint
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_svd.config import load_config
from lightning_svd.errors import UserError

SMALL_SET = ["evaluation.synthetic_ucf101.classes=2", "evaluation.synthetic_ucf101.videos_per_class=3",
             "evaluation.synthetic_ucf101.seconds=0.4", "ucf101.num_frames=4", "evaluation.steps=2",
             "evaluation.batch_size=3"]
UCF_FAST = [*SMALL_SET, "ucf101.generate_size=[16,16]", "ucf101.resize_size=[12,12]", "ucf101.crop_size=[9,12]",
            "train.diffusion.sampling.guider.scale=3.0"]


@pytest.fixture(scope="module")
def ucf_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval_ucf101")
    return run_dir, run_task("eval_ucf101", run_dir, UCF_FAST)


def test_ucf101_runs_the_whole_protocol_on_the_synthetic_set(ucf_run):
    run_dir, results = ucf_run
    assert results["evaluation"] == "ucf101_fvd" and results["fvd"] >= 0
    assert results["num_samples"] == 6 and results["num_real"] == 6
    assert results["plan"]["per_class"] == {"PanRight": 3, "PanLeft": 3}
    assert results["comparable"] is False
    for reason in ("synthetic UCF-101", "random-init model", "random-init extractor", "num_frames=4"):
        assert reason in results["reason"]
    assert json.loads((run_dir / "results.json").read_text())["fvd"] == results["fvd"]
    assert results["guidance_scale"] == 7.0, "the protocol's guidance replaces the stage's (3 here)"
    assert results["motion_bucket_id"] == 127, "the paper leaves it open: the released default, recorded"
    texts = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    texts.Reload()
    note = texts.Tensors("eval/comparable/text_summary")[0].tensor_proto.string_val[0].decode()
    assert note.startswith("no: synthetic UCF-101") and "random-init extractor" in note
    clips = json.loads((run_dir / "real_clips.json").read_text())["clips"]
    assert len(clips) == 6 and clips[0]["frame_indices"] == list(range(4))
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


def test_statistics_without_their_clip_record_are_recomputed(ucf_run, isolated_cache, tmp_path):
    """The real clips and frames are always recorded: statistics cached without that record are not reused."""
    for record in (isolated_cache / "fvd_stats").glob("*.clips.json"):
        record.unlink()
    again = run_task("eval_ucf101", tmp_path, UCF_FAST)
    assert again["real_statistics_cached"] is False and again["fvd"] == pytest.approx(ucf_run[1]["fvd"])
    assert len(json.loads((tmp_path / "real_clips.json").read_text())["clips"]) == 6


def test_ucf101_tracking_count_keeps_class_proportions_and_says_so(tmp_path):
    results = run_task("eval_ucf101", tmp_path, [*UCF_FAST, "ucf101.num_samples=2"])
    assert results["num_samples"] == 2 and results["plan"]["per_class"] == {"PanRight": 1, "PanLeft": 1}
    assert "tracking only" in results["reason"]


def test_paper_profile_lists_the_missing_paths():
    with pytest.raises(UserError, match="model.checkpoint .*data.ucf101_root .*weights.i3d"):
        load_config("eval_ucf101", "paper")
    with pytest.raises(UserError, match="data.multiview_root"):
        load_config("eval_multiview", "paper")


def test_ucf101_evaluates_a_tiny_text_to_video_checkpoint_as_trained(tmp_path):
    """The tiny protocol generates at the tiny training stages' size, so their checkpoints evaluate as they are."""
    checkpoint = save_stage_checkpoint("pretrain_video", tmp_path / "t2v.ckpt")
    tracking = [*SMALL_SET, "ucf101.num_samples=2", f"model.checkpoint={checkpoint}"]
    results = run_task("eval_ucf101", tmp_path / "run", tracking)
    assert results["model"] == str(checkpoint) and results["fvd"] >= 0 and results["num_samples"] == 2
    assert "random-init model" not in results["reason"] and "synthetic UCF-101" in results["reason"]
    small = save_stage_checkpoint("pretrain_video", tmp_path / "small.ckpt", "train.height=16", "train.width=16")
    with pytest.raises(UserError, match=r"generates 16x16, the protocol needs 32x32; .*ucf101.generate_size"):
        run_task("eval_ucf101", tmp_path / "small", [*SMALL_SET, f"model.checkpoint={small}"])


def test_report_renders_the_ucf101_row(ucf_run, tmp_path):
    results = run_task("report", tmp_path, [f"runs={ucf_run[0]}"])
    table2 = results["table2"]["ours"]
    assert len(table2) == 1 and table2[0]["fvd"] == pytest.approx(ucf_run[1]["fvd"])
    markdown = (tmp_path / "results.md").read_text()
    assert "| **random-init text_to_video (tiny)** |" in markdown and "no: synthetic UCF-101" in markdown
    assert "| SVD (ours in the paper) | 242.02 |" in markdown and (tmp_path / "table2.png").is_file()
