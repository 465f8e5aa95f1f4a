"""H.264 MP4 reading and writing with PyAV, and the degradation that makes attention-check videos.

Browsers only play H.264 in yuv420p (main profile) reliably, with the index (moov) at the front so playback
starts before the whole file arrived; every video this package writes follows that recipe.
"""

from pathlib import Path

import av
import numpy as np


def write_h264(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames as a browser-playable MP4, written aside, renamed into place."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
    path = Path(path)
    partial = path.with_name(path.name + ".partial.mp4")
    with av.open(str(partial), mode="w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"profile": "main", "preset": "veryfast", "crf": "20", "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.replace(path)


def read_frames(path: Path) -> tuple[np.ndarray, int]:
    """Decode every frame of a video as (T, H, W, 3) uint8 RGB, with its frame rate rounded to an integer."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = max(1, round(float(stream.average_rate or 8)))
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise ValueError(f"{path} has no decodable video frames")
    return np.stack(frames), fps


def degrade(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Make a video obviously worse on both study questions: coarse blocks, strong noise, frames shuffled.

    Pixelation and noise wreck visual quality; shuffling the frames breaks the motion a prompt describes,
    so the clean side is the right answer to either question.
    """
    _, height, width, _ = frames.shape
    block = max(4, min(height, width) // 10)
    small = frames[:, ::block, ::block]
    blocky = np.repeat(np.repeat(small, block, axis=1), block, axis=2)[:, :height, :width]
    noisy = blocky.astype(np.float32) + rng.normal(0.0, 60.0, size=blocky.shape)
    shuffled = noisy[rng.permutation(len(frames))]
    return np.clip(shuffled, 0, 255).astype(np.uint8)
