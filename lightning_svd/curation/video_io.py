"""Probe and decode source videos with PyAV, with exact frame numbers (never guessed from seconds).

Frame `i` of a video is the frame whose presentation time is `start + i / fps`; the probe demuxes every
packet (cheap: no decoding) to count frames, find keyframes and reject variable frame rate, so every later
stage can trust `index / fps` as the exact time of a frame.
"""

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class BadVideoError(Exception):
    """A source the pipeline cannot curate; it becomes a table row with status=error and this message."""


@dataclass(frozen=True)
class VideoLimits:
    """What a source must satisfy to be curated (larger frames are refused rather than risk running out of memory)."""

    max_frame_pixels: int = 4096 * 2304
    min_frames: int = 2
    vfr_tolerance: float = 0.25


@dataclass(frozen=True)
class VideoInfo:
    """Everything later stages need to know about a source, from one demux pass."""

    path: str
    fps: float
    num_frames: int
    width: int
    height: int
    keyframes: tuple[int, ...]
    start_pts: int
    time_base: Fraction

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def keyframe_times(self) -> list[float]:
        return [k / self.fps for k in self.keyframes]

    def frame_index(self, pts: int) -> int:
        return int(round(float((pts - self.start_pts) * self.time_base) * self.fps))

    def frame_pts(self, index: int) -> int:
        return self.start_pts + int(round(index / self.fps / self.time_base))


def _open(path: str):
    if not Path(path).is_file():
        raise BadVideoError(f"no such file: {path}")
    if Path(path).stat().st_size == 0:
        raise BadVideoError("empty file (0 bytes)")
    try:
        container = av.open(path)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise BadVideoError(f"not a readable video container ({type(err).__name__}: {err})") from err
    if not container.streams.video:
        container.close()
        raise BadVideoError("no video stream (audio-only or data file)")
    return container


def probe_video(path: str, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """Demux every packet once: frame count, keyframes, and a constant-frame-rate check."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > limits.max_frame_pixels:
            raise BadVideoError(
                f"frame size {width}x{height} exceeds curation.decode.max_frame_pixels={limits.max_frame_pixels}; "
                "downscale the source or raise the limit"
            )
        if width == 0 or height == 0:
            raise BadVideoError("video stream reports no frame size")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or rate <= 0:
            raise BadVideoError("video stream has no frame rate")
        time_base = stream.time_base
        pts, keyframe_pts = [], []
        try:
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keyframe_pts.append(packet.pts)
        except av.FFmpegError as err:
            raise BadVideoError(f"demuxing failed after {len(pts)} packets (truncated file?): {err}") from err
    finally:
        container.close()
    if len(pts) < limits.min_frames:
        raise BadVideoError(f"only {len(pts)} frame(s); need at least {limits.min_frames} to curate")
    ordered = np.sort(np.asarray(pts, dtype=np.int64))
    steps = np.diff(ordered).astype(np.float64) * float(time_base)
    expected = 1.0 / float(rate)
    worst = float(np.max(np.abs(steps - expected))) if len(steps) else 0.0
    if worst > limits.vfr_tolerance * expected:
        raise BadVideoError(
            f"variable frame rate (frame intervals from {steps.min() * 1000:.1f} to {steps.max() * 1000:.1f} ms "
            f"at {float(rate):.3f} fps); re-encode at a constant rate, e.g. ffmpeg -i IN -fps_mode cfr OUT"
        )
    info = VideoInfo(
        path=str(path),
        fps=float(rate),
        num_frames=len(pts),
        width=width,
        height=height,
        keyframes=(),
        start_pts=int(ordered[0]),
        time_base=time_base,
    )
    keyframes = tuple(sorted({info.frame_index(p) for p in keyframe_pts}))
    return VideoInfo(**{**info.__dict__, "keyframes": keyframes})


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """The (width, height) with the short side at `short_side` (never upscaled), both even."""
    if short_side is None or min(width, height) <= short_side:
        return width, height
    scale = short_side / min(width, height)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def decode_all(info: VideoInfo, short_side: int | None, threads: str = "AUTO") -> np.ndarray:
    """Every frame as RGB uint8 `(N, H, W, 3)`, downscaled to `short_side` by the decoder's scaler.

    The scaler averages areas: it antialiases the downscale and costs half of bilinear (at the native size both give
    the same pixels)."""
    width, height = scaled_size(info.width, info.height, short_side)
    frames = np.zeros((info.num_frames, height, width, 3), dtype=np.uint8)
    seen = np.zeros(info.num_frames, dtype=bool)
    container = _open(info.path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = threads
        try:
            for frame in container.decode(stream):
                index = info.frame_index(frame.pts) if frame.pts is not None else -1
                if 0 <= index < info.num_frames:
                    frames[index] = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
                    seen[index] = True
        except av.FFmpegError as err:
            raise BadVideoError(f"decoding failed after {int(seen.sum())} frames: {err}") from err
    finally:
        container.close()
    missing = info.num_frames - int(seen.sum())
    if missing:
        raise BadVideoError(f"decoded {int(seen.sum())} of {info.num_frames} frames (corrupt or truncated stream)")
    return frames


def decode_at(info: VideoInfo, indices: list[int], short_side: int | None = None) -> dict[int, np.ndarray]:
    """Selected frames as RGB uint8, seeking to the keyframe before a target only when that skips decoding."""
    targets = sorted({int(i) for i in indices})
    if any(not 0 <= t < info.num_frames for t in targets):
        raise ValueError(f"frame indices must lie in [0, {info.num_frames}), got {targets}")
    width, height = scaled_size(info.width, info.height, short_side)
    found: dict[int, np.ndarray] = {}
    container = _open(info.path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames, position = None, -1
        for target in targets:
            keyframe = max((k for k in info.keyframes if k <= target), default=0)
            if frames is None or keyframe > position + 1 or position >= target:
                container.seek(info.frame_pts(keyframe), stream=stream, backward=True, any_frame=False)
                frames = container.decode(stream)
            for frame in frames:
                position = info.frame_index(frame.pts)
                if position in targets and position not in found:
                    found[position] = frame.to_ndarray(width=width, height=height, format="rgb24",
                                                       interpolation="AREA")
                if position >= target:
                    break
    except av.FFmpegError as err:
        raise BadVideoError(f"decoding frames {targets} failed: {err}") from err
    finally:
        container.close()
    missing = [t for t in targets if t not in found]
    if missing:
        raise BadVideoError(f"could not decode frames {missing} (corrupt stream)")
    return found
