"""The `curate` task end to end: the table and report, resume after SIGKILL, a Ray worker lost mid-run, and bad inputs
as error rows."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from curation_media import textured, write_tone, write_video

from lightning_svd.clip_table import done_markers, read_clip_table
from lightning_svd.config import load_config, required_paths
from lightning_svd.errors import UserError
from lightning_svd.run_context import create_run
from lightning_svd.tasks.curate import run

REPO = Path(__file__).resolve().parents[2]
FAST = ["curation.clip.enabled=false", "curation.progress=false", "curation.workers=1"]


def curate(run_dir: Path, *overrides: str, experiment: str = "curate") -> dict:
    cfg = load_config(experiment, "tiny", [f"run_dir={run_dir}", *FAST, *overrides])
    with create_run(cfg) as ctx:
        return run(cfg, ctx)


@pytest.fixture(scope="module")
def corpus_source(small_corpus) -> Path:
    return small_corpus / "videos"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, corpus_source):
    run_dir = tmp_path_factory.mktemp("curate") / "reference"
    results = curate(run_dir, f"data.source={corpus_source}", "curation.shard_size=1", "curation.workers=2")
    return run_dir, results


def test_curate_writes_the_table_report_histograms_and_tensorboard(reference_run):
    run_dir, results = reference_run
    table = ds.dataset(run_dir / "clips", format="parquet").to_table()
    assert table.num_rows == results["counts"]["clips"] > 6
    assert set(table.column("status").to_pylist()) == {"ok"}
    assert len(set(table.column("clip_id").to_pylist())) == table.num_rows
    for name in ("curation_report.md", "curation_report.json", "score_histograms.png", "results.json"):
        assert (run_dir / name).is_file()
    assert any((run_dir / "tensorboard").iterdir())
    report = json.loads((run_dir / "curation_report.json").read_text())
    assert report["counts"]["videos"] == 6 and report["counts"]["shards"] == 6
    assert report["stage_seconds"]["decode"] > 0 and report["stage_seconds"]["ocr"] > 0
    assert "cut_f1_hard" in report["quality"] and report["quality"]["camera_clips"] == results["counts"]["clips"]
    assert sum(report["counts"]["clips_by_camera_motion"].values()) == results["counts"]["clips"]
    assert "| flow_score |" in (run_dir / "curation_report.md").read_text()


def test_curate_hq_scores_motion_with_raft_on_random_weights_and_says_so(tmp_path, corpus_source):
    """The high-quality set's curation runs RAFT (random weights in tiny, labelled); paper asks for its weights."""
    results = curate(tmp_path / "hq", f"data.source={corpus_source}", "curation.max_videos=1", experiment="curate_hq")
    rows = [row for row in read_clip_table(tmp_path / "hq" / "clips").to_pylist() if row["status"] == "ok"]
    assert rows and all(np.isfinite(row["flow_score"]) for row in rows)
    assert all(row["flow_score_model"].startswith("raft_small weights=random") for row in rows)
    assert any(note.startswith("flow_score: raft_small") for note in results["notes"])
    assert "motion score: RAFT raft_small on random weights" in (tmp_path / "hq" / "run.log").read_text()
    paper = [key for key, _, _ in required_paths(load_config("curate_hq", "paper", check_paths=False))]
    assert "curation.flow.raft.weights" in paper
    assert "curation.flow.raft.weights" not in [key for key, _, _ in
                                                required_paths(load_config("curate", "paper", check_paths=False))]


def test_rerun_in_the_same_run_dir_skips_finished_shards(reference_run, corpus_source):
    run_dir, results = reference_run
    again = curate(run_dir, f"data.source={corpus_source}", "curation.shard_size=1")
    assert again["this_run"]["videos_processed"] == 0 and again["this_run"]["shards_skipped"] == 6
    assert again["counts"] == results["counts"]


def test_a_run_killed_with_sigkill_resumes_to_the_same_table(reference_run, corpus_source, tmp_path):
    run_dir = tmp_path / "killed"
    code = ("import sys\nfrom lightning_svd.config import load_config\n"
            "from lightning_svd.run_context import create_run\nfrom lightning_svd.tasks.curate import run\n"
            "cfg = load_config('curate', 'tiny', sys.argv[1:])\nrun(cfg, create_run(cfg))\n")
    args = [f"run_dir={run_dir}", f"data.source={corpus_source}", "curation.shard_size=1", *FAST]
    process = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list((run_dir / "clips").glob("_part-*.done.json"))) < 2 and time.time() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(done_markers(run_dir / "clips"))
    assert 2 <= finished < 6
    resumed = curate(run_dir, f"data.source={corpus_source}", "curation.shard_size=1")
    assert resumed["this_run"]["shards_skipped"] == finished
    expected = read_clip_table(reference_run[0] / "clips")
    assert read_clip_table(run_dir / "clips").equals(expected)


def test_unreadable_videos_are_errors_readable_ones_without_clips_empty_and_the_run_finishes(tmp_path, corpus_source):
    source = tmp_path / "mixed"
    source.mkdir()
    good = sorted(corpus_source.glob("*.mp4"))[0]
    shutil.copy(good, source / "good.mp4")
    (source / "empty.mp4").write_bytes(b"")
    (source / "notes.mp4").write_text("not a video\n" * 100)
    (source / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    write_video(source / "single.mp4", [textured(96, 160, 1)])
    frames = [textured(96, 160, 2)] * 30
    write_video(source / "vfr.mp4", frames, pts=np.cumsum([0] + [1] * 14 + [3] * 15).tolist())
    write_video(source / "large.mp4", [textured(192, 256, 3)] * 30)
    write_tone(source / "audio_only.mp4")
    (source / "vfr.json").write_text('{"scenes": [{"start_frame": 0,')  # a malformed sidecar: a warning, no crash
    results = curate(tmp_path / "run", f"data.source={source}", "curation.decode.max_frame_pixels=20000")
    table = read_clip_table(tmp_path / "run" / "clips").to_pylist()
    errors = {Path(r["video_path"]).name: r["error"] for r in table if r["status"] == "error"}
    assert set(errors) == {"empty.mp4", "notes.mp4", "truncated.mp4", "large.mp4", "audio_only.mp4"}
    assert "no video stream" in errors["audio_only.mp4"] and "empty" in errors["empty.mp4"]
    assert "max_frame_pixels" in errors["large.mp4"]
    assert [(Path(r["video_path"]).name, r["error"]) for r in table if r["status"] == "empty"] == [
        ("single.mp4", "a single frame (a still image), no clip of at least curation.cuts.min_clip_s=0.5 s")]
    assert {Path(r["video_path"]).name for r in table if r["status"] == "ok"} == {"good.mp4", "vfr.mp4"}
    counts = results["counts"]
    assert (counts["videos_ok"], counts["videos_empty"], counts["videos_error"]) == (2, 1, 5)
    assert counts["videos_with_warnings"] == 1 and list(results["warnings"]) == [str(source / "vfr.mp4")]
    report = (tmp_path / "run" / "curation_report.md").read_text()
    assert "**8 videos: 2 ok (" in report and "1 empty (decode, but no clip long enough), 5 errors" in report
    assert "| `single.mp4` | empty | 0 |" in report and "| `vfr.mp4` | ok | 1 |" in report
    assert "caption sidecar vfr.json ignored: malformed JSON" in report
    assert (tmp_path / "run" / "results.json").is_file()


def test_clip_ids_do_not_depend_on_where_the_dataset_lies(reference_run, corpus_source, tmp_path):
    moved = tmp_path / "elsewhere" / "videos"
    shutil.copytree(corpus_source, moved)
    curate(tmp_path / "run", f"data.source={moved}", "curation.shard_size=1", "curation.workers=2")

    def ids(folder: Path) -> dict:
        rows = read_clip_table(folder).to_pylist()
        return {(Path(r["video_path"]).name, r["start_frame"]): r["clip_id"] for r in rows}

    moved_ids = ids(tmp_path / "run" / "clips")
    assert moved_ids == ids(reference_run[0] / "clips") and len(moved_ids) > 6


def test_a_missing_source_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="data.source"):
        curate(tmp_path / "run", f"data.source={tmp_path / 'nowhere'}")


PAPER_PATHS = ["data.source", "curation.clip.weights", "curation.aesthetic.laion.weights",
               "curation.captions.coca.weights", "curation.captions.vblip.model", "curation.captions.llm.model"]


def test_paper_curation_runs_the_three_captioners_and_asks_for_every_path_in_one_message():
    cfg = load_config("curate", "paper", check_paths=False)
    assert all(cfg.curation.captions[name].enabled for name in ("coca", "vblip", "llm"))
    with pytest.raises(UserError) as error:
        load_config("curate", "paper")
    message = str(error.value)
    assert f"missing {len(PAPER_PATHS)}:" in message and "\n" not in message
    assert all(f"{key} (not set)" in message for key in PAPER_PATHS)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_ray_engine_writes_the_same_table_as_the_local_engine(reference_run, corpus_source, tmp_path):
    results = curate(tmp_path / "ray", f"data.source={corpus_source}", "curation.shard_size=1", "curation.engine=ray",
                     "curation.ray.num_cpus=2", "curation.workers=2")
    assert results["counts"]["clips"] == reference_run[1]["counts"]["clips"]
    assert read_clip_table(tmp_path / "ray" / "clips").equals(read_clip_table(reference_run[0] / "clips"))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_ray_worker_lost_mid_run_leaves_the_table_of_an_uninterrupted_run(reference_run, corpus_source, tmp_path):
    """A Ray worker SIGKILLed after curating a video, before returning it, costs a retry and nothing else."""
    import ray

    victim, log = str(sorted(corpus_source.glob("*.mp4"))[2]), tmp_path / "curations.log"

    def lose_the_first_worker_to_finish_the_victim():
        """Ray's setup hook, run in every worker as it starts (pickled by value: workers cannot import this module)."""
        import os
        import signal

        from lightning_svd.curation.pipeline import VideoCurator

        curate_video = VideoCurator.curate

        def curate_then_die_once(self, path):
            result = curate_video(self, path)
            if path == victim:
                with open(log, "a") as file:
                    file.write(f"{os.getpid()}\n")
                try:
                    os.close(os.open(f"{log}.killed", os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    return result
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        VideoCurator.curate = curate_then_die_once

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": lose_the_first_worker_to_finish_the_victim})
    try:
        results = curate(tmp_path / "ray", f"data.source={corpus_source}", "curation.shard_size=1",
                         "curation.engine=ray", "curation.workers=2")
    finally:
        ray.shutdown()
    pids = log.read_text().split()
    assert len(set(pids)) == len(pids) == 2, f"the victim's worker was not lost and replaced once: pids {pids}"
    table = read_clip_table(tmp_path / "ray" / "clips")
    assert len(set(table.column("clip_id").to_pylist())) == table.num_rows
    assert table.equals(read_clip_table(reference_run[0] / "clips"))
    assert results["counts"] == reference_run[1]["counts"]
    assert results["this_run"]["videos_processed"] == 6 and len(done_markers(tmp_path / "ray" / "clips")) == 6
