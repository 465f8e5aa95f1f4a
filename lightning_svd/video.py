"""Video files through PyAV: write H.264 MP4s and decode frames as upright uint8 arrays, numbered by timestamp."""

from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np


def write_video(
    path: str | Path,
    frames,
    fps: int,
    crf: int = 18,
    keyframe_interval: int = 48,
    preset: str = "veryfast",
) -> Path:
    """Encode an iterable of (H, W, 3) uint8 RGB frames as H.264 (yuv420p, main profile) into an MP4.

    That recipe plays in every browser, and the index (moov) goes to the front so playback starts at once.

    x264 runs single-threaded and without macroblock-tree rate control, so the same frames always give the same
    bytes: with mbtree on, the same frames encoded twice in one process were seen to come out different.
    The file is written beside its destination and renamed into place, so a crash leaves no half video.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial.mp4")
    time_base = Fraction(1, fps)
    with av.open(str(partial), mode="w", options={"movflags": "+faststart"}) as container:
        stream = None
        for index, frame in enumerate(frames):
            if stream is None:
                height, width = frame.shape[:2]
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.time_base = time_base
                stream.options = {
                    "crf": str(crf), "g": str(keyframe_interval), "preset": preset,
                    "threads": "1", "profile": "main", "x264-params": "mbtree=0",
                }
            video_frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")
            video_frame.pts, video_frame.time_base = index, time_base
            container.mux(stream.encode(video_frame))
        if stream is None:
            raise ValueError(f"no frames given for {path}")
        container.mux(stream.encode(None))
    partial.replace(path)
    return path


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """BT.601 limited-range Y'CbCr with 2x2-averaged chroma, as the (H * 3/2, W) plane stack PyAV expects.

    Done here so the encoder's input never depends on swscale's build or flags.
    """
    if frame.shape[0] % 4 or frame.shape[1] % 2:
        raise ValueError(f"frame size {frame.shape[1]}x{frame.shape[0]}: height must be a multiple of 4, width even")
    rgb = frame.astype(np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    height, width = y.shape

    def subsample(plane):
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)).reshape(height // 4, width)

    planes = np.concatenate([y, subsample(cb), subsample(cr)], axis=0)
    return np.clip(np.round(planes), 0, 255).astype(np.uint8)


def frame_rate(path: str | Path) -> float:
    """The average frame rate of the first video stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.average_rate or stream.guessed_rate or 0) or 25.0


def is_frame_packet(packet: av.Packet) -> bool:
    """Whether a demuxed packet becomes a shown frame: it has data and a timestamp, and no edit list drops it."""
    return packet.size > 0 and packet.pts is not None and not packet.is_discard


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show `frame` upright (its display matrix, e.g. a phone's `rotate` tag)."""
    return round(frame.rotation / 90) % 4


def upright(image: np.ndarray, turns: int) -> np.ndarray:
    """`image` (H, W, C) turned `turns` quarter turns counter-clockwise, as a player displays it."""
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


@lru_cache(maxsize=64)
def _timestamps(path: str, size: int, modified_ns: int) -> np.ndarray:
    with av.open(path) as container:
        stream = container.streams.video[0]
        return np.unique([p.pts for p in container.demux(stream) if is_frame_packet(p)]).astype(np.int64)


def frame_timestamps(path: str | Path) -> np.ndarray:
    """Presentation timestamps of the first video stream's frames in display order (a demux pass, no decoding;
    cached per file, so many samples of one long video demux it once per process)."""
    status = Path(path).stat()
    return _timestamps(str(path), status.st_size, status.st_mtime_ns)


def read_frames(path: str | Path, start: int = 0, stop: int | None = None, step: int = 1) -> np.ndarray:
    """Decode frames `start:stop:step` of the first video stream as upright (T, H, W, 3) uint8.

    Frames are numbered in display order, whatever their timestamps (variable frame rates, streams that do not
    start at zero): frame `i` is the one with the i-th smallest presentation timestamp. For a span deep inside a long
    video the decoder first seeks to the keyframe before `start`, so a clip costs its own length, not the video's
    prefix.
    """
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        timestamps = frame_timestamps(path) if start > 0 else None
        if timestamps is not None:
            if start >= len(timestamps):
                raise ValueError(f"{path}: frame {start} is past the last frame ({len(timestamps)} frames)")
            container.seek(int(timestamps[start]), stream=stream, backward=True)
        for position, frame in enumerate(container.decode(stream)):
            if timestamps is None:
                index = position
            elif frame.pts is None:
                continue
            else:
                index = int(np.searchsorted(timestamps, frame.pts))
            if stop is not None and index >= stop:
                break
            if index >= start and (index - start) % step == 0:
                frames.append(upright(frame.to_ndarray(format="rgb24"), quarter_turns(frame)))
    if not frames:
        raise ValueError(f"{path}: no frames decoded in range {start}:{stop}:{step}")
    return np.stack(frames)
