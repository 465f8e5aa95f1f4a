"""Small test videos made with PyAV from numpy frames: textures, pans, numbered frames."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(path, frames, fps: int = 24, keyframe_interval: int = 12, pts=None, rotation: int = 0,
                faststart: bool = False) -> Path:
    """Encode RGB uint8 frames as H.264 (time base 1/fps); `pts` overrides the timestamps (variable rate, or a stream
    that does not start at zero); `rotation` (degrees counter-clockwise) is written as the display matrix, as phones
    do; `faststart` puts the index in front."""
    path = Path(path)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        time_base = Fraction(1, fps)  # the muxer replaces stream.time_base once the header is written
        stream.time_base = time_base
        stream.options = {"g": str(keyframe_interval), "crf": "18", "bf": "0", "threads": "1",
                          "x264-params": "scenecut=0"}
        for index, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = index if pts is None else pts[index]
            video_frame.time_base = time_base
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    return path


def textured(height: int, width: int, seed: int, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A smooth random texture (sum of plane waves), optionally shifted by `shift` pixels (x, y)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    for channel in range(3):
        for _ in range(5):
            k = rng.uniform(2 * np.pi / 60, 2 * np.pi / 14)
            theta, phase = rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
            along = (xs - shift[0]) * np.cos(theta) + (ys - shift[1]) * np.sin(theta)
            image[..., channel] += np.sin(k * along + phase)
    base = rng.uniform(60, 190, size=3)
    return np.clip(base + 18 * image, 0, 255).astype(np.uint8)


def pan(height: int, width: int, seed: int, frames: int, speed: float) -> list[np.ndarray]:
    return [textured(height, width, seed, (speed * t, 0.5 * speed * t)) for t in range(frames)]


def fade(height: int, width: int, frames: int) -> list[np.ndarray]:
    """A flat field fading black to white and back: it decodes, but every frame is a transition."""
    levels = np.concatenate([np.linspace(0, 255, frames // 2), np.linspace(255, 0, frames - frames // 2)])
    return [np.full((height, width, 3), round(level), np.uint8) for level in levels]


def write_tone(path, seconds: float = 1.0, rate: int = 16000) -> Path:
    """An audio-only file (AAC sine tone): a container without a video stream."""
    path = Path(path)
    samples = (np.sin(np.arange(int(seconds * rate)) / 10) * 0.3).astype(np.float32)[None, :]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]), format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
