"""The clip table's shards and done markers, and the sidecar caption conventions."""

import json

import numpy as np
import pyarrow.dataset as ds
import pytest

from lightning_svd.clip_table import SCHEMA, done_markers, read_clip_table
from lightning_svd.curation.captions import SidecarCaptioner
from lightning_svd.curation.table import ClipTableWriter, ShardMismatchError, plan_shards

AT_24_FPS = np.arange(300) / 24.0
SPEC_COLUMNS = ["clip_id", "video_path", "start_s", "end_s", "start_frame", "end_frame", "fps", "width", "height",
                "num_frames", "caption_coca", "caption_vblip", "caption_llm", "clip_score", "aesthetic_score",
                "ocr_area", "flow_score", "status", "error"]


def test_schema_has_every_column_of_the_spec_contract_and_a_config_hash_per_score():
    names = SCHEMA.names
    assert all(column in names for column in SPEC_COLUMNS)
    assert all(f"{score}_config" in names for score in ("clip_score", "aesthetic_score", "ocr_area", "flow_score"))


def test_shards_are_planned_in_path_order():
    shards = plan_shards(["/v/c.mp4", "/v/a.mp4", "/v/b.mp4"], shard_size=2)
    assert [s.videos for s in shards] == [("/v/a.mp4", "/v/b.mp4"), ("/v/c.mp4",)]
    assert shards[1].name == "part-00001"
    with pytest.raises(ValueError, match="shard_size"):
        plan_shards(["/v/a.mp4"], 0)


def test_writer_marks_shards_done_and_readers_see_only_finished_parts(tmp_path):
    videos = [str(tmp_path / f"{n}.mp4") for n in "abc"]
    for video in videos:
        open(video, "wb").close()
    shards = plan_shards(videos, 2)
    writer = ClipTableWriter(tmp_path / "clips", "hash-1")
    assert not writer.is_done(shards[0])
    writer.write(shards[0], [{"clip_id": "x1", "video_path": videos[0], "status": "ok", "flow_score": 1.5}],
                 {"stage_seconds": {}, "errors": {}, "cuts": {}})
    (tmp_path / "clips" / "part-00001.parquet").write_bytes(b"half written, no marker")
    assert writer.is_done(shards[0]) and not writer.is_done(shards[1])
    table = read_clip_table(tmp_path / "clips")
    assert table.num_rows == 1 and table.column("flow_score").to_pylist() == [1.5]
    assert done_markers(tmp_path / "clips")[0]["videos"] == videos[:2]
    (tmp_path / "clips" / "part-00001.parquet").unlink()
    assert ds.dataset(tmp_path / "clips", format="parquet").to_table().num_rows == 1
    with pytest.raises(ShardMismatchError, match="another curation config"):
        ClipTableWriter(tmp_path / "clips", "hash-2").is_done(shards[0])


def test_sidecar_reads_the_corpus_scenes_by_largest_overlap(tmp_path):
    video = tmp_path / "vid.mp4"
    scenes = [{"start_frame": 0, "end_frame": 50, "caption": "first"},
              {"start_frame": 60, "end_frame": 120, "caption": "second"}]
    video.with_suffix(".json").write_text(json.dumps({"scenes": scenes}))
    assert SidecarCaptioner().captions(str(video), [(0, 50), (40, 100), (200, 210)], AT_24_FPS) == (
        ["first", "second", None], [])


def test_sidecar_reads_timed_captions_and_whole_video_text(tmp_path):
    timed = tmp_path / "timed.mp4"
    timed.with_name("timed.captions.json").write_text(json.dumps([
        {"start_s": 0.0, "end_s": 2.0, "caption": "a dog runs"}, {"start_s": 2.0, "end_s": 5.0, "caption": "a cat"}]))
    assert SidecarCaptioner().captions(str(timed), [(0, 24), (48, 100)], AT_24_FPS)[0] == ["a dog runs", "a cat"]
    uneven = np.concatenate([np.arange(24) / 24, 1 + np.arange(100) / 6])  # timed captions match presentation times
    assert SidecarCaptioner().captions(str(timed), [(24, 30)], uneven)[0] == ["a dog runs"]
    whole = tmp_path / "whole.mp4"
    whole.with_suffix(".txt").write_text("a sunset over the sea\n")
    assert SidecarCaptioner().captions(str(whole), [(0, 10), (100, 200)], AT_24_FPS)[0] == (
        ["a sunset over the sea"] * 2)
    assert SidecarCaptioner().captions(str(tmp_path / "bare.mp4"), [(0, 10)], AT_24_FPS) == ([None], [])


@pytest.mark.parametrize(("name", "content", "reason"), [
    (".json", b'{"scenes": [{"start_frame": 0, ', "malformed JSON"),
    (".json", b'{"scenes": [{"caption": "no frames"}]}', "missing key 'start_frame'"),
    (".captions.json", b'{"start_s": 0}', "expected a list of timed captions"),
    (".txt", bytes(range(256)) * 4, "not UTF-8 text"),
    (".txt", b"caption\x00\x00\x01binary", "binary data"),
])
def test_a_sidecar_that_cannot_be_read_is_a_warning_and_the_next_one_is_used(tmp_path, name, content, reason):
    video = tmp_path / "vid.mp4"
    video.with_name("vid" + name).write_bytes(content)
    fallback = "" if name == ".txt" else "a caption from the text file"
    if fallback:
        video.with_suffix(".txt").write_text(fallback)
    captions, warnings = SidecarCaptioner().captions(str(video), [(0, 24)], AT_24_FPS)
    assert captions == [fallback or None]
    assert len(warnings) == 1 and warnings[0].startswith(f"caption sidecar vid{name} ignored: {reason}")
