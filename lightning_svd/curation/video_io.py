"""Probe and decode source videos with PyAV, in presentation timestamps (never guessed from a frame rate).

Frame `i` of a video is the packet with the i-th smallest presentation timestamp; `VideoInfo.times[i]` is its time
in seconds from the first frame. Variable frame rates (phones, screen captures, dropped frames) and streams whose
first timestamp is not zero are ordinary input: every later stage picks frames and measures durations through
`times`. Frames come out upright: the display rotation (a display matrix, or a phone's `rotate` tag) is applied
when decoding, and `width` / `height` are the displayed size.
"""

from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path

import av
import numpy as np

from ..video import is_frame_packet, quarter_turns, upright


class BadVideoError(Exception):
    """A source the pipeline cannot read; it becomes a table row with status=error and this message."""


@dataclass(frozen=True)
class VideoLimits:
    """What a source must satisfy to be curated (larger frames are refused rather than risk running out of memory)."""

    max_frame_pixels: int = 4096 * 2304


@dataclass(frozen=True, eq=False)
class VideoInfo:
    """Everything later stages need to know about a source, from one demux pass.

    `pts` holds each frame's presentation timestamp in `time_base` units, ascending, and one more entry: where the
    last frame ends (its packet's duration, else the median frame interval), so a clip `[start, end)` lasts
    `times[end] - times[start]` seconds whether or not it runs to the end of the video."""

    path: str
    pts: np.ndarray
    time_base: Fraction
    keyframes: tuple[int, ...]
    coded_width: int
    coded_height: int
    turns: int = 0  # counter-clockwise quarter turns that show the decoded picture upright

    @property
    def num_frames(self) -> int:
        return len(self.pts) - 1

    @cached_property
    def times(self) -> np.ndarray:
        """Seconds from the first frame, per frame plus the end of the last (length `num_frames + 1`)."""
        return (self.pts - self.pts[0]).astype(np.float64) * self.time_base.numerator / self.time_base.denominator

    @property
    def duration_s(self) -> float:
        return float(self.times[-1])

    @property
    def fps(self) -> float:
        """The mean frame rate."""
        return span_rate(self.times, 0, self.num_frames)

    @property
    def width(self) -> int:
        """Displayed width (after the display rotation)."""
        return self.coded_height if self.turns % 2 else self.coded_width

    @property
    def height(self) -> int:
        return self.coded_width if self.turns % 2 else self.coded_height

    def keyframe_times(self) -> list[float]:
        return [float(self.times[k]) for k in self.keyframes]

    def frame_index(self, pts: int | None) -> int:
        """The index of the frame shown at `pts`, or -1 when no frame has that timestamp."""
        if pts is None:
            return -1
        index = int(np.searchsorted(self.pts[:-1], pts))
        return index if index < self.num_frames and self.pts[index] == pts else -1

    def frame_pts(self, index: int) -> int:
        """Frame `index`'s timestamp; `num_frames` gives the end of the last frame."""
        return int(self.pts[index])

    def image(self, frame: av.VideoFrame, short_side: int | None) -> np.ndarray:
        """A decoded frame as upright RGB uint8 with the short side at `short_side`. The decoder's scaler averages
        areas: it antialiases the downscale and costs half of bilinear (at the native size both give the same
        pixels)."""
        width, height = scaled_size(self.coded_width, self.coded_height, short_side)
        return upright(frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA"), self.turns)


def span_rate(times: np.ndarray, start: int, end: int) -> float:
    """Mean frame rate of frames `[start, end)`: frames per second of the time they are shown."""
    return (end - start) / float(times[end] - times[start])


def frame_intervals(times: np.ndarray, start: int, end: int) -> tuple[float, float]:
    """The shortest and longest time a frame of `[start, end)` is shown, in seconds."""
    intervals = np.diff(times[start:end + 1])
    return float(intervals.min()), float(intervals.max())


def frame_at(times: np.ndarray, t: float, start: int, end: int) -> int:
    """The frame of `[start, end)` shown at time `t` (the last one starting at or before it, 1 us of slack)."""
    return int(np.clip(np.searchsorted(times[:end], t + 1e-6, side="right") - 1, start, end - 1))


def frames_at_rate(times: np.ndarray, start: int, end: int, rate: float) -> list[int]:
    """Frames of `[start, end)` sampled at `rate` per second: the frame nearest each instant `times[start] + k / rate`
    up to the last frame's time, each frame once. At a constant frame rate that is a multiple of `rate` this is every
    `fps / rate`-th frame."""
    if end <= start:
        return []
    shown = times[start:end]
    targets = np.arange(shown[0], shown[-1] + 1e-6, 1.0 / rate)
    after = np.minimum(np.searchsorted(shown, targets), len(shown) - 1)
    before = np.maximum(after - 1, 0)
    nearest = np.where(targets - shown[before] <= shown[after] - targets, before, after)
    return sorted({start + int(i) for i in nearest})


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


def _first_frame_turns(stream, packet) -> int | None:
    """The display rotation, from the first frame the decoder gives back (None until it gives one)."""
    try:
        frames = stream.decode(packet)
    except av.FFmpegError as err:
        raise BadVideoError(f"the first frame cannot be decoded: {err}") from err
    return quarter_turns(frames[0]) if frames else None


def _truncation(container, stream, packets: int) -> str | None:
    """What is missing when the container's index lists more frames than the file holds (a copy or download cut
    short; an MP4 with its index in front still opens)."""
    listed = stream.frames
    if not listed or packets >= listed:
        return None
    size = Path(container.name).stat().st_size
    entries = stream.index_entries
    needed = max((entries[i].pos + entries[i].size for i in range(len(entries))), default=0)
    missing = f"; the file has {size} bytes, its index points up to byte {needed}" if needed > size else ""
    return (f"truncated file: its index lists {listed} frames but only {packets} are in the file{missing} "
            "(the copy or download was cut short)")


def probe_video(path: str, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """Demux every packet once (cheap: only the first frame is decoded, for the display rotation): timestamps,
    keyframes, and a check that the file holds every frame its index lists."""
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
        pts, durations, keyframe_pts, packets, turns = [], [], [], 0, None
        try:
            for packet in container.demux(stream):
                packets += bool(packet.size or packet.pts is not None)  # not the flush packet at the end
                if not is_frame_packet(packet):
                    continue
                pts.append(packet.pts)
                durations.append(packet.duration or 0)
                if packet.is_keyframe:
                    keyframe_pts.append(packet.pts)
                if turns is None:
                    turns = _first_frame_turns(stream, packet)
        except av.FFmpegError as err:
            raise BadVideoError(f"demuxing failed after {len(pts)} packets (truncated file?): {err}") from err
        truncated = _truncation(container, stream, packets)
        if truncated:
            raise BadVideoError(truncated)
        if not pts:
            raise BadVideoError("the video stream holds no frames")
        if turns is None:
            turns = _first_frame_turns(stream, None)
        if turns is None:
            raise BadVideoError(f"no frame could be decoded from {len(pts)} packets")
        rate = stream.average_rate or stream.guessed_rate
        time_base = stream.time_base
    finally:
        container.close()
    ordered, first = np.unique(np.asarray(pts, dtype=np.int64), return_index=True)
    end = ordered[-1] + _last_duration(durations[first[-1]], ordered, rate, time_base)
    keyframes = tuple(sorted({int(np.searchsorted(ordered, p)) for p in keyframe_pts}))
    return VideoInfo(str(path), np.append(ordered, end), time_base, keyframes, width, height, turns)


def _last_duration(duration: int, ordered: np.ndarray, rate, time_base: Fraction) -> int:
    """How long the last frame is shown, in `time_base` units: its packet's duration, else the median interval."""
    if duration > 0:
        return duration
    if len(ordered) > 1:
        return max(1, int(np.median(np.diff(ordered))))
    return max(1, int(round(1 / (rate * time_base)))) if rate else 1


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """The (width, height) with the short side at `short_side` (never upscaled), both even."""
    if short_side is None or min(width, height) <= short_side:
        return width, height
    scale = short_side / min(width, height)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


# Decoded frames waiting for the converting thread: enough to keep the decoder busy, few enough to bound memory
CONVERT_AHEAD = 8


def decode_all(info: VideoInfo, short_side: int | None, threads: str = "AUTO") -> np.ndarray:
    """Every frame as upright RGB uint8 `(N, H, W, 3)`, downscaled to `short_side` by the decoder's scaler.

    The scaler runs in a second thread (PyAV releases the GIL there): in this thread it would stall the decoder's
    own threads, which wait for their frames to be taken, and decoding at the analysis size would cost about twice
    decoding alone."""
    width, height = scaled_size(info.width, info.height, short_side)
    frames = np.zeros((info.num_frames, height, width, 3), dtype=np.uint8)
    seen = np.zeros(info.num_frames, dtype=bool)
    container = _open(info.path)

    def store(index: int, image) -> None:
        frames[index] = image.result()
        seen[index] = True

    try:
        stream = container.streams.video[0]
        stream.thread_type = threads
        with ThreadPoolExecutor(1) as converter:
            pending = deque()
            try:
                for frame in container.decode(stream):
                    index = info.frame_index(frame.pts)
                    if index >= 0:
                        pending.append((index, converter.submit(info.image, frame, short_side)))
                    if len(pending) > CONVERT_AHEAD:
                        store(*pending.popleft())
            except av.FFmpegError as err:
                raise BadVideoError(f"decoding failed after {int(seen.sum()) + len(pending)} frames: {err}") from err
            while pending:
                store(*pending.popleft())
    finally:
        container.close()
    missing = info.num_frames - int(seen.sum())
    if missing:
        raise BadVideoError(f"decoded {int(seen.sum())} of {info.num_frames} frames (corrupt or truncated stream)")
    return frames


def decode_at(info: VideoInfo, indices: list[int], short_side: int | None = None,
              on_frame: Callable[[int, np.ndarray], None] | None = None) -> dict[int, np.ndarray]:
    """Selected frames as upright RGB uint8, seeking to the keyframe before a target only when that skips decoding.
    `on_frame(index, image)` sees each one as soon as it is decoded, in ascending order (work on early frames can
    start while later ones decode). One decoding thread: every seek flushes frame threads, which then cost more CPU
    than they save and take the core the work on the early frames needs."""
    targets = sorted({int(i) for i in indices})
    if any(not 0 <= t < info.num_frames for t in targets):
        raise ValueError(f"frame indices must lie in [0, {info.num_frames}), got {targets}")
    found: dict[int, np.ndarray] = {}
    container = _open(info.path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        frames, position = None, -1
        for target in targets:
            keyframe = max((k for k in info.keyframes if k <= target), default=0)
            if frames is None or keyframe > position + 1 or position >= target:
                container.seek(info.frame_pts(keyframe), stream=stream, backward=True, any_frame=False)
                frames = container.decode(stream)
            for frame in frames:
                position = info.frame_index(frame.pts)
                if position in targets and position not in found:
                    found[position] = info.image(frame, short_side)
                    if on_frame is not None:
                        on_frame(position, found[position])
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
