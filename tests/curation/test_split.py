"""Optional physical clips: exact re-encode, and stream copy from keyframes."""

import pytest

from lightning_svd.curation.pipeline import VideoCurator
from lightning_svd.curation.video_io import decode_all, probe_video


@pytest.mark.parametrize("mode", ["reencode", "copy"])
def test_split_writes_one_file_per_clip_with_the_clip_frames(small_corpus, cfg_copy, tmp_path, mode):
    cfg_copy["split"].update(mode=mode, dir=str(tmp_path / "clips"))
    cfg_copy["cuts"]["snap_to_keyframes"] = mode == "copy"
    cfg_copy["ocr"]["backend"] = "none"
    video = str(sorted((small_corpus / "videos").glob("*.mp4"))[1])
    rows = VideoCurator(cfg_copy).curate(video).rows
    assert rows and all(r["status"] == "ok" for r in rows), rows
    source = decode_all(probe_video(video), None)
    for row in rows:
        info = probe_video(row["clip_path"])
        assert info.num_frames == row["num_frames"] and (info.width, info.height) == (row["width"], row["height"])
        clip = decode_all(info, None)
        for offset in (0, row["num_frames"] - 1):
            difference = abs(clip[offset].astype(int) - source[row["start_frame"] + offset].astype(int)).mean()
            assert difference < 4, (mode, row["start_frame"], offset, difference)
