"""Probe and decode: frames by presentation timestamp (variable rates, streams not starting at zero), the display
rotation, keyframes, seeking, and every kind of bad input as a clear error."""

import numpy as np
import pytest
from curation_media import write_tone, write_video

from lightning_svd.curation.video_io import (
    BadVideoError,
    VideoLimits,
    decode_all,
    decode_at,
    frames_at_rate,
    probe_video,
)
from lightning_svd.video import read_frames


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


def test_a_truncated_faststart_file_is_reported_as_truncated(tmp_path):
    """With the index in front the file still opens; the probe says frames are missing, not that the rate varies."""
    noise = np.random.default_rng(0).integers(0, 256, (60, 48, 64, 3), dtype=np.uint8)
    whole = write_video(tmp_path / "whole.mp4", list(noise), faststart=True)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    with pytest.raises(BadVideoError, match=r"truncated file: its index lists 60 frames but only \d+ are in the file"):
        probe_video(str(truncated))


def test_audio_only(tmp_path):
    with pytest.raises(BadVideoError, match="no video stream"):
        probe_video(str(write_tone(tmp_path / "tone.m4a")))


def test_single_frame_is_a_video_of_one_frame(tmp_path):
    info = probe_video(str(write_video(tmp_path / "one.mp4", numbered_frames(1))))
    assert info.num_frames == 1 and info.duration_s == pytest.approx(1 / 24)


def test_variable_frame_rate_frames_are_numbered_and_timed_by_their_timestamps(tmp_path):
    gaps = [1] * 12 + [3] * 12 + [1] * 12
    pts = np.concatenate([[0], np.cumsum(gaps)])[:36].tolist()
    path = write_video(tmp_path / "vfr.mp4", numbered_frames(36), pts=pts)
    info = probe_video(str(path))
    assert info.num_frames == 36
    np.testing.assert_allclose(info.times[:36], np.asarray(pts) / 24)
    assert info.duration_s == pytest.approx((pts[-1] + 1) / 24) and info.fps == pytest.approx(36 / info.duration_s)
    assert [frame_number(f) for f in decode_all(info, short_side=24)] == list(range(36))
    frames = decode_at(info, [13, 20, 30])
    assert all(frame_number(frames[i]) == i for i in (13, 20, 30))
    assert [frame_number(f) for f in read_frames(path, 10, 30, 5)] == [10, 15, 20, 25]


def test_a_stream_starting_at_one_second_is_timed_from_its_first_frame(tmp_path):
    path = write_video(tmp_path / "late.mp4", numbered_frames(36), pts=list(range(24, 60)))
    info = probe_video(str(path))
    assert info.pts[0] > 0 and info.times[0] == 0.0 and info.duration_s == pytest.approx(1.5)
    assert info.keyframes == (0, 12, 24)
    assert [frame_number(f) for f in decode_all(info, short_side=24)] == list(range(36))
    assert frame_number(decode_at(info, [25])[25]) == 25
    assert [frame_number(f) for f in read_frames(path, 20, 23)] == [20, 21, 22]


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_the_display_rotation_is_applied_wherever_frames_are_read(tmp_path, rotation):
    frames = numbered_frames(24)
    path = write_video(tmp_path / f"rotated{rotation}.mp4", frames, rotation=rotation)
    info = probe_video(str(path))
    turns = rotation // 90
    assert (info.width, info.height) == ((48, 64) if turns % 2 else (64, 48))
    upright = [np.rot90(f, turns) for f in frames]
    decoded = decode_all(info, short_side=None)
    assert decoded.shape == (24, info.height, info.width, 3)
    assert np.abs(decoded.astype(int) - np.stack(upright)).mean() < 6
    assert np.abs(decode_at(info, [5])[5].astype(int) - upright[5]).mean() < 6
    assert np.abs(read_frames(path, 4, 6).astype(int) - np.stack(upright[4:6])).mean() < 6
    assert decode_all(info, short_side=24).shape[1:3] == ((32, 24) if turns % 2 else (24, 32))


def test_frames_at_rate_samples_by_time():
    times = np.arange(49) / 24.0
    assert frames_at_rate(times, 0, 48, 2.0) == list(range(0, 48, 12))
    assert frames_at_rate(times, 5, 30, 6.0) == list(range(5, 30, 4))
    uneven = np.array([0.0, 0.1, 0.2, 0.45, 0.52, 0.9, 1.0, 1.6, 1.7])
    assert frames_at_rate(uneven, 0, 8, 2.0) == [0, 4, 6, 7]  # nearest to 0, 0.5, 1.0, 1.5
    assert frames_at_rate(uneven, 3, 4, 2.0) == [3]


def test_very_large_frames_are_refused_by_the_limit(numbered_video):
    with pytest.raises(BadVideoError, match="max_frame_pixels"):
        probe_video(str(numbered_video), VideoLimits(max_frame_pixels=64 * 47))
