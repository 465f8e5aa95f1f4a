import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lightning_svd.clip_table import SECONDS_PER_YEAR
from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.reporting import build_report, load_runs
from lightning_svd.reporting.dataset_stats import clip_table_statistics, format_count
from lightning_svd.reporting.tables import table1
from lightning_svd.run_context import create_run
from lightning_svd.tasks import report as report_task


def write_run(root: Path, name: str, results: dict) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def clip_rows(count: int, videos: int, with_motion: bool = True) -> dict:
    return {
        "clip_id": [f"c{i}" for i in range(count)],
        "video_path": [f"v{i % videos}.mp4" for i in range(count)],
        "start_s": [float(i) for i in range(count)],
        "end_s": [float(i) + 2.0 + (i % 2) for i in range(count)],
        "num_frames": [48 + 24 * (i % 2) for i in range(count)],
        "status": ["ok"] * count,
        "flow_score": [1.0 if with_motion else None] * count,
        "caption_coca": ["a clip"] * count,
    }


def study_results(arms=("a", "b", "c")) -> dict:
    entries = {arm: {"elo_gain": 3.0 * i, "elo_gain_low": 3.0 * i - 1, "elo_gain_high": 3.0 * i + 1}
               for i, arm in enumerate(arms)}
    rankings = {q: {"num_votes": 12, "arms": entries} for q in ("quality", "prompt_following", "aggregate")}
    return {"experiment": "preference_study", "arms": list(arms), "rankings": rankings, "method": {"interval": 0.95}}


@pytest.fixture
def runs_root(tmp_path) -> Path:
    root = tmp_path / "runs"
    write_run(root, "ucf", {"experiment": "eval_ucf101", "evaluation": "ucf101_fvd", "model": "tiny t2v",
                            "fvd": 1234.567, "num_samples": 64, "comparable": False,
                            "reason": "random-init extractor; 64 samples instead of the protocol's 13320"})
    write_run(root, "mv", {"experiment": "eval_multiview", "evaluation": "multiview", "lpips": 0.4321, "psnr": 12.5,
                           "clip_s": 0.71, "num_objects": 3, "comparable": True, "reason": None})
    write_run(root, "study", study_results())
    write_run(root, "ablation", {"experiment": "ablation_aesthetic", "criterion": "aesthetic_score",
                                 "profile": "tiny", "feature_extractor": {"kind": "random"}, "notes": "tiny run",
                                 "arms": [{"name": "keep all", "removed_fraction": 0.0, "num_clips": 40,
                                           "threshold": None, "train_steps": 20, "final_loss": 0.1, "fvd": 50.0,
                                           "elo": 1002.0},
                                          {"name": "drop 25%", "removed_fraction": 0.25, "num_clips": 30,
                                           "threshold": 4.5, "train_steps": 20, "final_loss": 0.09, "fvd": 40.0,
                                           "elo": 998.0}]})
    table_dir = tmp_path / "curate" / "clips"
    table_dir.mkdir(parents=True)
    pq.write_table(pa.table(clip_rows(6, 3)), table_dir / "part-0000.parquet")
    write_run(root, "curate_run", {"experiment": "curate", "clip_table": str(table_dir)})
    write_run(root, "corpus", {"experiment": "synthetic_corpus", "videos": 6})
    return root


def test_clip_table_statistics(tmp_path):
    rows = clip_rows(11, 4)
    rows["status"][9], rows["status"][10] = "error", "empty"
    pq.write_table(pa.table(rows), tmp_path / "a.parquet")
    stats = clip_table_statistics(tmp_path / "a.parquet")
    durations = [2.0 + (i % 2) for i in range(9)]
    assert stats["num_clips"] == 9 and stats["num_videos"] == 4
    assert stats["num_error_rows"] == 1 and stats["num_empty_rows"] == 1  # unreadable apart from nothing usable
    assert stats["mean_clip_duration_s"] == pytest.approx(sum(durations) / 9)
    assert stats["total_duration_years"] == pytest.approx(sum(durations) / SECONDS_PER_YEAR)
    assert stats["mean_num_frames"] == pytest.approx((5 * 48 + 4 * 72) / 9)
    assert stats["mean_clips_per_video"] == pytest.approx(9 / 4) and stats["motion_annotated_fraction"] == 1.0
    notes = table1([("a", stats)]).notes
    assert notes == ["*a, not counted: 1 empty (the video decodes but yields no clip), 1 error (it cannot be read)*"]
    assert format_count(577_000_000) == "577M" and format_count(9_800_000) == "9.8M" and format_count(12) == "12"


def test_clip_table_folder_of_parts_and_errors(tmp_path):
    pq.write_table(pa.table(clip_rows(4, 2)), tmp_path / "part-0.parquet")
    pq.write_table(pa.table(clip_rows(2, 1, with_motion=False)), tmp_path / "part-1.parquet")
    stats = clip_table_statistics(tmp_path)
    assert stats["num_clips"] == 6 and stats["motion_annotated_fraction"] == pytest.approx(4 / 6)
    rows = clip_rows(2, 1)
    del rows["start_s"]
    pq.write_table(pa.table(rows), tmp_path / "bad.parquet")
    with pytest.raises(UserError, match="lacks columns start_s/end_s or fps for durations"):
        clip_table_statistics(tmp_path / "bad.parquet")
    del rows["status"]
    pq.write_table(pa.table(rows), tmp_path / "bad.parquet")
    with pytest.raises(UserError, match=r"lacks columns \['status'\] and start_s/end_s"):
        clip_table_statistics(tmp_path / "bad.parquet")


def test_ground_truth_tables_without_seconds_take_durations_from_frames(tmp_path):
    """The train task's table of the synthetic corpus has frames and fps but no start_s/end_s or flow_score."""
    rows = {"clip_id": ["a", "b"], "video_path": ["v.mp4", "v.mp4"], "start_frame": [0, 48],
            "end_frame": [48, 120], "num_frames": [48, 72], "fps": [24.0, 24.0], "status": ["ok", "ok"]}
    pq.write_table(pa.table(rows), tmp_path / "clip_table.parquet")
    stats = clip_table_statistics(tmp_path / "clip_table.parquet")
    assert stats["mean_clip_duration_s"] == pytest.approx(2.5) and stats["total_duration_s"] == pytest.approx(5.0)
    assert stats["motion_annotated_fraction"] == 0.0 and stats["mean_clips_per_video"] == 2.0
    with pytest.raises(UserError, match="clip table not found"):
        clip_table_statistics(tmp_path / "missing")


def test_load_runs_names_the_bad_run(tmp_path):
    with pytest.raises(UserError, match=r"runs\[0\]=.* has no results.json"):
        load_runs([tmp_path / "nothing"])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        load_runs([tmp_path / "broken"])


def test_runs_are_sorted_by_what_they_report(runs_root):
    runs = {r.run_dir.name: r for r in load_runs(sorted(runs_root.iterdir()))}
    assert runs["ucf"].kinds == ["ucf101_fvd"] and runs["mv"].kinds == ["multiview"]
    assert runs["study"].kinds == ["study"] and runs["ablation"].kinds == ["ablation"]
    assert runs["corpus"].kinds == [] and runs["curate_run"].clip_table == runs_root.parent / "curate" / "clips"
    assert runs["ucf"].label == "tiny t2v" and runs["mv"].label == "eval_multiview/mv"


def test_report_puts_our_rows_beside_the_papers(runs_root, tmp_path):
    runs = load_runs([runs_root / n for n in ("ucf", "mv", "study", "ablation", "curate_run", "corpus")])
    results, markdown = build_report(runs, [], tmp_path)
    assert "| SVD (ours in the paper) | 242.02 |" in markdown and "| PYOCO | 355.20 |" in markdown
    assert "| CogVideo (EN) | 701.59 |" in markdown and "| MagicVideo | 655.00 |" in markdown
    assert "| **tiny t2v** | 1234.57 | 64 | no: random-init extractor; 64 samples" in markdown
    assert "| SVD-MV | 0.14 | 16.83 | 0.89 | 50 |" in markdown
    assert "| **eval_multiview/mv** | 0.432 | 12.50 | 0.710 | 3 | yes |" in markdown
    assert "| #Clips | 577M | 152M | 9.8M | 2.3M | 10.7M | 234M | 6 |" in markdown
    assert "| Mean clips/video | 11.09 | 4.76 | 1.2 | 1.1 | 1.0 | 32.96 | 2.00 |" in markdown
    assert "| drop 25% | 25 % | 30 | 4.5000 | 20 | 0.0900 | 40.00 | 998.0 |" in markdown
    assert results["unused_runs"] == [str(runs_root / "corpus")]
    assert results["table2"]["ours"][0]["fvd"] == 1234.567 and results["table3"]["ours"][0]["psnr"] == 12.5
    assert results["charts"] == ["elo_02_preference_study_study.png", "elo_03_ablation_aesthetic_ablation.png"]
    assert "![Elo gain over the lowest arm (aggregate of both questions)](elo_03_ablation_aesthetic_ablation.png)" \
        in markdown
    assert "| Total duration (years) | 212.09 | 50.64 | 3.76 | 0.78 | 5.94 | 86.80 | 4.75e-07 (0.00417 h) |" in markdown
    assert 'FVD features: `{"kind": "random"}`.' in markdown
    for name in results["charts"]:
        assert f"]({name})" in markdown
        with Image.open(tmp_path / name) as image:
            assert image.size == (1000, 520)


def test_tables_are_also_written_as_images_with_our_rows_shaded(runs_root, tmp_path):
    runs = load_runs([runs_root / "ucf", runs_root / "mv"])
    results, markdown = build_report(runs, [], tmp_path)
    assert results["table_images"] == ["table2.png", "table3.png", "table1.png"]
    for name in results["table_images"]:
        assert f"As an image: [{name}]({name})" in markdown
    with Image.open(tmp_path / "table2.png") as image:
        pixels = image.convert("RGB")
        width, height = pixels.size
        colours = {pixels.getpixel((20, y)) for y in range(height)}
    assert width > 600 and height > 200
    assert (255, 243, 196) in colours, "our row is shaded"
    (tmp_path / "alone").mkdir()
    alone, _ = build_report([], [], tmp_path / "alone")
    with Image.open(tmp_path / "alone" / "table2.png") as image:
        assert (255, 243, 196) not in {image.convert("RGB").getpixel((20, y)) for y in range(image.size[1])}
    assert alone["table_images"] == ["table2.png", "table3.png", "table1.png"]


def test_ablation_elo_chart_shows_gains_over_the_lowest_arm(runs_root):
    from lightning_svd.reporting.tables import ablation_elo

    run = load_runs([runs_root / "ablation"])[0]
    elo = ablation_elo(run)
    assert elo["arms"] == ["keep all", "drop 25%"]
    assert elo["rankings"]["aggregate"]["arms"] == {"keep all": {"elo_gain": 4.0}, "drop 25%": {"elo_gain": 0.0}}
    unrated = json.loads((runs_root / "ablation" / "results.json").read_text())
    for arm in unrated["arms"]:
        arm.pop("elo")
    assert ablation_elo(load_runs([write_run(runs_root, "unrated", unrated)])[0]) is None


def test_report_without_runs_shows_the_paper_alone(tmp_path):
    results, markdown = build_report([], [], tmp_path)
    assert "none given: paper rows only" in markdown and "no UCF-101 evaluation among the runs given" in markdown
    assert results["table2"]["ours"] == [] and len(results["table2"]["paper"]) == 7


def test_report_task_writes_results(runs_root, tmp_path):
    table = runs_root.parent / "curate" / "clips" / "part-0000.parquet"
    cfg = load_config("report", "tiny", [f"runs=[{runs_root / 'ucf'},{runs_root / 'study'}]",
                                         f"report.clip_tables=[{table}]", f"run_dir={tmp_path / 'out'}"])
    ctx = create_run(cfg)
    try:
        results = report_task.run(cfg, ctx)
    finally:
        ctx.close()
    assert results["experiment"] == "report" and len(results["runs"]) == 2
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["table1"]["ours"][0]["label"] == "part-0000.parquet"
    assert "| **tiny t2v** |" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / written["charts"][0]).is_file()
    assert any((tmp_path / "out" / "tensorboard").iterdir())


def test_report_task_takes_one_run_dir_without_brackets(runs_root, tmp_path):
    cfg = load_config("report", "tiny", [f"runs={runs_root / 'mv'}", f"run_dir={tmp_path / 'out'}"])
    ctx = create_run(cfg)
    try:
        results = report_task.run(cfg, ctx)
    finally:
        ctx.close()
    assert [r["run_dir"] for r in results["runs"]] == [str(runs_root / "mv")]
    assert results["table3"]["ours"][0]["psnr"] == 12.5


def test_report_task_rejects_bad_runs_value(tmp_path):
    cfg = load_config("report", "tiny", ["runs=[1,2]", f"run_dir={tmp_path / 'out'}"])
    ctx = create_run(cfg)
    try:
        with pytest.raises(UserError, match="runs must be a list of paths"):
            report_task.run(cfg, ctx)
    finally:
        ctx.close()
