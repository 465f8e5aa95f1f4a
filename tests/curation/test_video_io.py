"""Probe and decode: exact frame numbers, keyframes, seeking, and every kind of bad input as a clear error."""

import numpy as np
import pytest
from curation_media import write_tone, write_video

from lightning_svd.curation.video_io import BadVideoError, VideoLimits, decode_all, decode_at, probe_video


def numbered_frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Frame i shows i in binary as 8 black or white stripes, so a decoded frame tells its own index."""
    frames = []
    for index in range(count):
        bits = np.array([(index >> b) & 1 for b in range(8)], np.uint8) * 255
        frames.append(np.repeat(np.repeat(bits, width // 8)[None, :, None], height, 0).repeat(3, 2))
    return frames


def frame_number(frame: np.ndarray) -> int:
    stripes = frame.mean(axis=(0, 2)).reshape(8, -1).mean(axis=1)
    return int(sum(1 << b for b in range(8) if stripes[b] > 127))


@pytest.fixture(scope="module")
def numbered_video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("io") / "numbered.mp4", numbered_frames(60), keyframe_interval=12)


def test_probe_counts_frames_and_finds_keyframes(numbered_video):
    info = probe_video(str(numbered_video))
    assert (info.num_frames, info.width, info.height) == (60, 64, 48)
    assert info.fps == pytest.approx(24.0)
    assert info.duration_s == pytest.approx(2.5)
    assert info.keyframes == (0, 12, 24, 36, 48)
    assert info.keyframe_times()[1] == pytest.approx(0.5)


def test_decode_all_puts_every_frame_at_its_index_and_downscales(numbered_video):
    info = probe_video(str(numbered_video))
    frames = decode_all(info, short_side=24)
    assert frames.shape == (60, 24, 32, 3)
    assert [frame_number(f) for f in frames] == list(range(60))


def test_decode_at_returns_exactly_the_requested_frames_across_keyframes(numbered_video):
    info = probe_video(str(numbered_video))
    wanted = [59, 3, 30, 31, 13, 0]
    frames = decode_at(info, wanted)
    assert sorted(frames) == sorted(wanted)
    assert all(frame_number(frames[i]) == i for i in wanted)
    assert frames[30].shape == (48, 64, 3)
    with pytest.raises(ValueError, match="frame indices"):
        decode_at(info, [60])


def test_zero_byte_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(BadVideoError, match="empty file"):
        probe_video(str(empty))


def test_not_a_video(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("these are not the frames you are looking for\n" * 50)
    with pytest.raises(BadVideoError, match="not a readable video"):
        probe_video(str(text))


def test_truncated_file(tmp_path, numbered_video):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(numbered_video.read_bytes()[: numbered_video.stat().st_size // 2])
    with pytest.raises(BadVideoError):
        info = probe_video(str(truncated))
        decode_all(info, short_side=24)


def test_audio_only(tmp_path):
    with pytest.raises(BadVideoError, match="no video stream"):
        probe_video(str(write_tone(tmp_path / "tone.m4a")))


def test_single_frame(tmp_path):
    path = write_video(tmp_path / "one.mp4", numbered_frames(1))
    with pytest.raises(BadVideoError, match="only 1 frame"):
        probe_video(str(path))


def test_variable_frame_rate(tmp_path):
    gaps = [1] * 12 + [3] * 12 + [1] * 12
    pts = np.concatenate([[0], np.cumsum(gaps)])[:36].tolist()
    path = write_video(tmp_path / "vfr.mp4", numbered_frames(36), pts=pts)
    with pytest.raises(BadVideoError, match="variable frame rate"):
        probe_video(str(path))


def test_very_large_frames_are_refused_by_the_limit(numbered_video):
    with pytest.raises(BadVideoError, match="max_frame_pixels"):
        probe_video(str(numbered_video), VideoLimits(max_frame_pixels=64 * 47))
