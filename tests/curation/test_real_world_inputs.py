"""What real collections hold, through the whole pipeline: variable frame rates, streams that do not start at zero,
rotated phone videos, videos with nothing usable (status empty, apart from unreadable ones) and bad caption sidecars."""

import numpy as np
import pyarrow as pa
import pytest
import torch
from curation_media import fade, pan, write_video

from data_modules.clips import ClipDataset, resize_and_crop
from data_modules.motion_buckets import MotionBuckets
from lightning_svd.curation.pipeline import VideoCurator
from lightning_svd.curation.runner import _shard_meta

# Scene A pans 1 px per frame at 24 fps, scene B 3 px per frame at 8 fps: the same 24 px per second
SCENE_A, SCENE_B = pan(96, 160, 1, 30, 1.0), pan(96, 160, 2, 30, 3.0)
VARIABLE_PTS = list(range(30)) + [30 + 3 * i for i in range(30)]


@pytest.fixture
def curator(cfg_copy):
    return VideoCurator(cfg_copy)


def ok_rows(result) -> list[dict]:
    assert result.status == "ok", result.error or result.empty
    return result.rows


def test_a_variable_frame_rate_video_is_curated_in_presentation_time(tmp_path, curator):
    rows = ok_rows(curator.curate(str(write_video(tmp_path / "vfr.mp4", SCENE_A + SCENE_B, pts=VARIABLE_PTS))))
    assert [(r["start_frame"], r["end_frame"]) for r in rows] == [(0, 30), (30, 60)]
    first, second = rows
    assert (first["start_s"], first["end_s"]) == pytest.approx((0.0, 1.25))
    assert (second["start_s"], second["end_s"]) == pytest.approx((1.25, 1.25 + 29 * 3 / 24 + 1 / 24))
    assert first["fps"] == pytest.approx(24.0) and second["fps"] == pytest.approx(30 / (second["end_s"] - 1.25))
    assert second["min_frame_interval_s"] == pytest.approx(1 / 24) and second["max_frame_interval_s"] == pytest.approx(
        3 / 24)
    assert first["flow_score"] == pytest.approx(second["flow_score"], rel=0.15)  # flow is per second of video


def test_a_stream_starting_at_one_second_gives_the_rows_of_one_starting_at_zero(tmp_path, curator):
    at_zero = ok_rows(curator.curate(str(write_video(tmp_path / "zero.mp4", SCENE_A + SCENE_B))))
    late = ok_rows(curator.curate(str(write_video(tmp_path / "late.mp4", SCENE_A + SCENE_B,
                                                  pts=[24 + i for i in range(60)]))))
    columns = ("start_frame", "end_frame", "start_s", "end_s", "fps", "flow_score", "ocr_area", "aesthetic_score")
    assert [[r[c] for c in columns] for r in late] == [[r[c] for c in columns] for r in at_zero]


def test_a_rotated_phone_video_is_read_upright_by_curation_and_the_data_module(tmp_path, curator):
    frames = SCENE_A + SCENE_B
    rotated = write_video(tmp_path / "phone.mp4", frames, rotation=90)
    rows = ok_rows(curator.curate(str(rotated)))
    assert all((r["width"], r["height"]) == (96, 160) for r in rows)
    upright = ok_rows(curator.curate(str(write_video(tmp_path / "upright.mp4", [np.rot90(f) for f in frames]))))
    for row, reference in zip(rows, upright, strict=True):
        assert row["flow_score"] == pytest.approx(reference["flow_score"], rel=0.05)
    dataset = ClipDataset(pa.Table.from_pylist(rows), 4, 40, 24, [1], lambda row, rng: "",
                          MotionBuckets.calibrate([r["flow_score"] for r in rows]))
    read = dataset.frames(rows[0], 0, 0, 1)
    expected = resize_and_crop(np.stack([np.rot90(f) for f in frames[:4]]), 40, 24)
    assert read.shape == (4, 3, 40, 24) and torch.mean(torch.abs(read - expected)) < 0.05


def test_a_video_without_a_clip_long_enough_is_empty_not_an_error(tmp_path, cfg_copy):
    cfg_copy["cuts"]["min_clip_s"] = 1.0
    curator = VideoCurator(cfg_copy)
    fading = curator.curate(str(write_video(tmp_path / "fade.mp4", fade(96, 160, 48))))
    assert fading.status == "empty" and fading.error is None
    assert fading.empty.startswith("no clip of at least curation.cuts.min_clip_s=1.0 s (video 2.00 s")
    [row] = fading.rows
    assert row["status"] == "empty" and row["error"] == fading.empty and row["start_frame"] is None
    still = curator.curate(str(write_video(tmp_path / "still.mp4", SCENE_A[:1])))
    assert still.status == "empty" and "a single frame" in still.empty
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    unreadable = curator.curate(str(broken))
    assert unreadable.status == "error" and unreadable.rows[0]["status"] == "error"
    assert len({fading.rows[0]["clip_id"], still.rows[0]["clip_id"], unreadable.rows[0]["clip_id"]}) == 3
    meta = _shard_meta([fading, still, unreadable])
    assert (meta["videos_ok"], meta["videos_empty"], meta["videos_error"], meta["clips"]) == (0, 2, 1, 0)
    assert set(meta["empty"]) == {fading.video_path, still.video_path} and list(meta["errors"]) == [broken.as_posix()]


def test_bad_caption_sidecars_cost_no_clip(tmp_path, curator):
    video = write_video(tmp_path / "clip.mp4", SCENE_A)
    video.with_suffix(".json").write_text('{"scenes": [')
    video.with_suffix(".txt").write_bytes(bytes(range(256)))
    result = curator.curate(str(video))
    assert [r["status"] for r in result.rows] == ["ok"] and result.rows[0]["caption_sidecar"] is None
    assert [w.split(":")[0] for w in result.warnings] == ["caption sidecar clip.json ignored",
                                                          "caption sidecar clip.txt ignored"]
    assert _shard_meta([result])["warnings"] == {str(video): result.warnings}
