"""Video files through PyAV: write H.264 MP4s and decode frames as uint8 arrays."""

from fractions import Fraction
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

    x264 runs single-threaded so the same frames always give the same bytes, on any machine.
    The file is written beside its destination and renamed into place, so a crash leaves no half video.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial.mp4")
    time_base = Fraction(1, fps)
    with av.open(str(partial), mode="w") as container:
        stream = None
        for index, frame in enumerate(frames):
            if stream is None:
                height, width = frame.shape[:2]
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.time_base = time_base
                stream.options = {
                    "crf": str(crf), "g": str(keyframe_interval), "preset": preset,
                    "threads": "1", "profile": "main",
                }
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts, video_frame.time_base = index, time_base
            container.mux(stream.encode(video_frame))
        if stream is None:
            raise ValueError(f"no frames given for {path}")
        container.mux(stream.encode(None))
    partial.replace(path)
    return path


def read_frames(path: str | Path, start: int = 0, stop: int | None = None, step: int = 1) -> np.ndarray:
    """Decode frames `start:stop:step` (by decode order index) of the first video stream as (T, H, W, 3) uint8."""
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if stop is not None and index >= stop:
                break
            if index >= start and (index - start) % step == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        raise ValueError(f"{path}: no frames decoded in range {start}:{stop}:{step}")
    return np.stack(frames)
