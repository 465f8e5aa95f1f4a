"""Sampling an arm's proxy and its FVD against the held-out real clips (real statistics computed once, cached)."""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import torch

from data_modules.clips import resize_and_crop
from lightning_svd.ablation.data import clip_caption
from lightning_svd.errors import UserError
from lightning_svd.evaluation.extractors import VideoFeatureExtractor
from lightning_svd.evaluation.fvd import FrechetVideoDistance, FVDProtocol, RealStatisticsCache
from lightning_svd.video import read_frames


def real_windows(real: pa.Table, num_frames: int, per_clip: int) -> list[tuple[str, int]]:
    """Up to `per_clip` evenly spaced, non-overlapping windows of `num_frames` frames in every real clip."""
    windows = []
    for row in real.to_pylist():
        length = row["end_frame"] - row["start_frame"]
        count = max(1, min(per_clip, length // num_frames))
        for start in np.linspace(0, length - num_frames, count).round().astype(int):
            windows.append((row["video_path"], row["start_frame"] + int(start)))
    return windows


def real_videos(windows: list[tuple[str, int]], num_frames: int, height: int, width: int,
                batch_size: int = 8) -> Iterator[torch.Tensor]:
    """The real windows' frames, resized and cropped as the DataModule does: (B, T, 3, H, W) in [-1, 1]."""
    batch = []
    for video_path, start in windows:
        batch.append(resize_and_crop(read_frames(video_path, start, start + num_frames), height, width))
        if len(batch) == batch_size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


def fvd_covariance_note(real: int, generated: int, dims: int) -> str | None:
    """FVD fits a Gaussian to each side; with no more videos than feature dimensions a covariance is rank-deficient
    and the distance is biased by the sample count (400-d I3D features need 401+ videos a side). None when both
    sides have enough."""
    short = [f"{count} {side}" for side, count in (("real", real), ("generated", generated)) if count <= dims]
    if not short:
        return None
    return (f"FVD compares {' and '.join(short)} videos in {dims}-d features: fewer videos than dimensions give a "
            "rank-deficient covariance, so FVD is biased by the sample count and comparable only between runs with "
            f"the same counts; draw more than {dims} a side (ablation.heldout.max_clips x windows_per_clip; "
            "prompts x ablation.sampling.samples_per_prompt).")


class ArmEvaluator:
    """FVD of generated videos against one fixed real set; the real side is featurised once per protocol."""

    def __init__(self, extractor: VideoFeatureExtractor, real: pa.Table, windows_per_clip: int, num_frames: int,
                 height: int, width: int, cache_dir: str):
        self.metric = FrechetVideoDistance(extractor, reset_real_features=False)
        self.windows = real_windows(real, num_frames, windows_per_clip)
        if len(self.windows) < 2:
            raise UserError(f"FVD needs two or more real videos, the held-out clips give {len(self.windows)}: raise "
                            "ablation.heldout.windows_per_clip or ablation.heldout.video_fraction")
        names = "|".join(f"{Path(path).name}:{start}" for path, start in self.windows)
        protocol = FVDProtocol(
            extractor=self.metric.extractor.identity(), num_frames=num_frames, resolution=(height, width),
            preprocessing="evenly spaced windows, antialiased resize to cover, centre crop",
            num_samples=len(self.windows), real_set=hashlib.sha256(names.encode()).hexdigest()[:20])
        self.from_cache = RealStatisticsCache(cache_dir).get_or_compute(
            protocol, self.metric, lambda: real_videos(self.windows, num_frames, height, width))

    def covariance_note(self, generated_per_model: int) -> str | None:
        return fvd_covariance_note(len(self.windows), generated_per_model, int(self.metric.extractor.num_features))

    def fvd(self, videos: np.ndarray) -> dict:
        """`videos`: generated (B, T, H, W, 3) uint8."""
        self.metric.reset()
        self.metric.update(torch.from_numpy(videos).permute(0, 1, 4, 2, 3).contiguous(), real=False)
        return self.metric.result()


def sample_arm(stage, prompts: list[dict], samples_per_prompt: int, seed: int, num_frames: int,
               steps: int, precision: str = "32-true") -> np.ndarray:
    """Every prompt `samples_per_prompt` times in one seeded batch: (P * S, T, H, W, 3) uint8, prompt-major per
    repetition, so the first P videos are one sample of each prompt. A stage trained in Lightning's bf16 precision
    samples under bfloat16 autocast too (its weights and the Denoiser's preconditioning stay float32)."""
    texts = [p["text"] for p in prompts] * samples_per_prompt
    device = next(stage.parameters()).device.type
    with torch.autocast(device, dtype=torch.bfloat16, enabled=str(precision).startswith("bf16")):
        return stage.generate(prompts=texts, seed=seed, num_frames=num_frames, steps=steps).numpy()


def frame_difference(videos: np.ndarray) -> float:
    """Mean absolute change between consecutive frames of (B, T, H, W, 3) uint8 videos, in 0..255: real clips
    change little from frame to frame, noise-like samples change as much as independent noise (about 85)."""
    return round(float(np.abs(np.diff(videos.astype(np.float32), axis=1)).mean()), 3)


def grain(videos: np.ndarray) -> np.ndarray:
    """Per video (B, T, H, W, 3) uint8: mean |frame - its 3x3 median| over its frames, in grey levels (at 32x32 flat
    real frames sit near 1.5, the ablation corpus' planted 2-pixel noise near 8)."""
    frames = videos.reshape(-1, *videos.shape[-3:])
    values = [np.abs(f.astype(np.float32) - cv2.medianBlur(f, 3).astype(np.float32)).mean() for f in frames]
    return np.array(values).reshape(videos.shape[:2]).mean(axis=1)


def as_uint8_videos(clips: torch.Tensor) -> np.ndarray:
    """(B, T, 3, H, W) in [-1, 1] -> (B, T, H, W, 3) uint8, the layout and range of the samples."""
    return ((clips + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()


def real_frame_difference(windows: list[tuple[str, int]], num_frames: int, height: int, width: int) -> float:
    return frame_difference(as_uint8_videos(torch.cat(list(real_videos(windows, num_frames, height, width)))))


def prompt_real_clips(prompts: list[dict], real: pa.Table, num_frames: int, height: int, width: int) -> np.ndarray:
    """The first window of the held-out clip each prompt was taken from (or of the first clips, for prompts from a
    file) as (P, T, H, W, 3) uint8: what the samples of those prompts should look like."""
    rows = real.to_pylist()
    by_caption = {}
    for row in rows:
        by_caption.setdefault(clip_caption(row), row)
    matched = [by_caption.get(p["text"]) for p in prompts]
    chosen = matched if all(matched) else rows[:len(prompts)]
    windows = [(row["video_path"], row["start_frame"]) for row in chosen]
    return as_uint8_videos(torch.cat(list(real_videos(windows, num_frames, height, width))))


def sample_to_prompt_distances(samples: np.ndarray, prompt_clips: np.ndarray) -> np.ndarray:
    """(N, P) RGB distances (0-441) from each sample's mean colour to each prompt's real clip's mean colour."""
    real = prompt_clips.reshape(len(prompt_clips), -1, 3).astype(np.float64).mean(axis=1)
    generated = samples.reshape(len(samples), -1, 3).astype(np.float64).mean(axis=1)
    return np.linalg.norm(generated[:, None] - real[None], axis=-1)


def prompt_colour_distances(samples: np.ndarray, prompt_clips: np.ndarray) -> tuple[float, float | None]:
    """Mean RGB distance (0-441) from each sample's mean colour to the real clip of its own prompt, and to the real
    clips of the other prompts (None with one prompt). `samples` are prompt-major per repetition, as `sample_arm`
    returns them; samples that follow their prompts sit nearer their own prompt's clip."""
    count = len(prompt_clips)
    distances = sample_to_prompt_distances(samples, prompt_clips)
    own = (np.arange(len(samples)) % count)[:, None] == np.arange(count)[None, :]
    others = float(distances[~own].mean()) if count > 1 else None
    return float(distances[own].mean()), others


SHAPE_APART = 60.0    # RGB distance from a frame's median colour (its background) that makes a pixel foreground
SHAPE_NEAR = 60.0     # RGB distance to a shape's colour within which a pixel counts as that colour
SHAPE_MIN_AREA = 6    # pixels, 4-connected: the smallest planted shape covers about 17 at the proxies' 32x32


def background_distance(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (H, W, 3) uint8 frame as float pixels, and each pixel's RGB distance from the frame's median colour (its
    background)."""
    pixels = frame.astype(np.float32)
    return pixels, np.linalg.norm(pixels - np.median(pixels.reshape(-1, 3), axis=0), axis=-1)


def regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected regions of a boolean mask: the label image and each region's area (label i + 1 at index i)."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    return labels, stats[1:, cv2.CC_STAT_AREA]


def foreground_colour(frame: np.ndarray) -> np.ndarray | None:
    """Mean colour of the largest region of a frame far from its background, if it is as large as a small shape:
    the colour of a real clip's shapes. None where the frame shows none."""
    pixels, apart = background_distance(frame)
    labels, areas = regions(apart > SHAPE_APART)
    if not len(areas) or areas.max() < SHAPE_MIN_AREA:
        return None
    return pixels[labels == 1 + int(areas.argmax())].mean(axis=0)


def shows_colour(frame: np.ndarray, colour: np.ndarray) -> bool:
    """Whether a frame holds a shape-sized region of `colour` that stands apart from its background."""
    pixels, apart = background_distance(frame)
    _, areas = regions((np.linalg.norm(pixels - colour, axis=-1) < SHAPE_NEAR) & (apart > SHAPE_APART))
    return bool(len(areas)) and int(areas.max()) >= SHAPE_MIN_AREA


def colour_shares(samples: np.ndarray, colours: list[np.ndarray]) -> tuple[float, float]:
    """Share of the samples' frames (prompt-major per repetition) that show a shape-sized region in their own
    prompt's colour, and in another prompt's."""
    own, others = [], []
    for index, video in enumerate(samples):
        for prompt, colour in enumerate(colours):
            shown = float(np.mean([shows_colour(frame, colour) for frame in video]))
            (own if prompt == index % len(colours) else others).append(shown)
    return float(np.mean(own)), float(np.mean(others))


def shape_check(samples: np.ndarray, prompt_clips: np.ndarray) -> tuple[float, float] | None:
    """`colour_shares` with each prompt's shape colour taken from its real clip (the largest foreground region of
    its first frame). Samples that draw their prompts' shapes score well above the others' share; None with fewer
    than two prompts or where a prompt's clip shows no shape (real footage)."""
    colours = [foreground_colour(clip[0]) for clip in prompt_clips]
    if len(colours) < 2 or any(colour is None for colour in colours):
        return None
    return colour_shares(samples, colours)


def prompt_following(samples: np.ndarray, prompt_clips: np.ndarray) -> float | None:
    """Share of samples whose mean colour lies nearest their own prompt's real clip among all the prompts' clips
    (chance 1 / prompts; None with one prompt): how often a person matching colours would find a sample's prompt."""
    count = len(prompt_clips)
    if count < 2:
        return None
    nearest = sample_to_prompt_distances(samples, prompt_clips).argmin(axis=1)
    return float((nearest == np.arange(len(samples)) % count).mean())
