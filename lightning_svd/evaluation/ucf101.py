"""The paper's zero-shot UCF-101 FVD protocol (SVD App. E.4), the pieces that need no model.

- The dataset: a local UCF-101 folder and its official split files (`classInd.txt`, `trainlist0K.txt`,
  `testlist0K.txt`); the protocol's set is all videos of one fold's train and test lists (13,320 in 101
  classes), and its per-class counts decide how many videos of each class are generated.
- Prompts: the raw class name ("TableTennisShot"), with no text modification.
- Real clips: 16 frames at 25 fps from the start of each video (decoded with PyAV; the frame nearest to each
  target time, so a video at another frame rate is resampled in time), at the native 240x320.
- Generated clips: 16 frames at 320x576, antialiased bilinear resize to 240x432, centre crop to 240x320.

A smaller sample count (for tracking during training) keeps the class proportions and is labelled not
comparable with the paper's table, as is any other deviation.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from ..video import quarter_turns, upright
from .fvd import FVDProtocol

OFFICIAL_NUM_CLASSES = 101
OFFICIAL_NUM_VIDEOS = 13_320
PROMPT_STYLES = ("raw", "spaced")
SPLIT_FOLDER_NAMES = ("ucfTrainTestlist", "UCF101TrainTestSplits-RecognitionTask/ucfTrainTestlist",
                      "UCF101TrainTestSplits-RecognitionTask")


@dataclass(frozen=True)
class UCF101Video:
    path: str          # relative to the video root, as the split files write it: "Class/v_Class_gXX_cYY.avi"
    class_name: str
    class_index: int   # 1-based, as in classInd.txt
    split: str         # "train" or "test" of the fold


@dataclass
class UCF101Index:
    """Classes and videos of one fold's train and test lists, read from the official split files."""

    video_root: Path
    splits_dir: Path
    fold: int
    classes: dict[int, str]
    videos: list[UCF101Video]

    @classmethod
    def from_root(cls, root: str | Path, splits_dir: str | Path | None = None, fold: int = 1) -> UCF101Index:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise UserError(f"UCF-101 folder not found: {root}; set data.ucf101_root to the local dataset")
        video_root = root / "UCF-101" if (root / "UCF-101").is_dir() else root
        splits_dir = Path(splits_dir).expanduser() if splits_dir else _find_splits_dir(root)
        if fold not in (1, 2, 3):
            raise UserError(f"UCF-101 fold must be 1, 2 or 3, got {fold}")
        classes = _read_class_index(splits_dir / "classInd.txt")
        by_name = {name: index for index, name in classes.items()}
        videos, seen = [], set()
        for split in ("train", "test"):
            list_path = splits_dir / f"{split}list0{fold}.txt"
            if not list_path.is_file():
                raise UserError(f"UCF-101 split file missing: {list_path}")
            for number, line in enumerate(list_path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                parts = line.split()
                relative = parts[0].replace("\\", "/")
                class_name = relative.split("/")[0]
                where = f"{list_path.name} line {number}"
                if class_name not in by_name:
                    raise UserError(f"{where}: class folder '{class_name}' is not in classInd.txt")
                if len(parts) > 1 and (not parts[1].isdigit() or int(parts[1]) != by_name[class_name]):
                    raise UserError(f"{where}: label {parts[1]} does not match classInd.txt ({class_name} is "
                                    f"{by_name[class_name]})")
                if relative in seen:
                    raise UserError(f"{where}: {relative} is listed twice in fold {fold}")
                seen.add(relative)
                videos.append(UCF101Video(relative, class_name, by_name[class_name], split))
        return cls(video_root, splits_dir, fold, classes, videos)

    def per_class_counts(self) -> dict[str, int]:
        """Videos per class, in class-index order (the protocol generates this many of each)."""
        counts = Counter(v.class_name for v in self.videos)
        return {name: counts.get(name, 0) for _, name in sorted(self.classes.items())}

    def is_official_size(self) -> bool:
        return len(self.classes) == OFFICIAL_NUM_CLASSES and len(self.videos) == OFFICIAL_NUM_VIDEOS

    def missing_files(self) -> list[str]:
        return [v.path for v in self.videos if not (self.video_root / v.path).is_file()]

    def fingerprint(self) -> str:
        """Hash of the class list and the fold's video list: names the real set in cache keys."""
        text = json.dumps([sorted(self.classes.items()), [(v.path, v.class_index) for v in self.videos]])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _find_splits_dir(root: Path) -> Path:
    for candidate in (root, *(root / name for name in SPLIT_FOLDER_NAMES), root.parent / "ucfTrainTestlist"):
        if (candidate / "classInd.txt").is_file():
            return candidate
    raise UserError(f"no classInd.txt under {root} (looked in {', '.join(SPLIT_FOLDER_NAMES)}); "
                    "set data.ucf101_splits to the folder of the official split files")


def _read_class_index(path: Path) -> dict[int, str]:
    if not path.is_file():
        raise UserError(f"UCF-101 class list missing: {path}")
    classes = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise UserError(f"{path.name} line {number}: expected '<index> <ClassName>', got {line!r}")
        classes[int(parts[0])] = parts[1]
    if not classes:
        raise UserError(f"{path} lists no classes")
    return classes


def class_prompt(class_name: str, style: str = "raw") -> str:
    """The prompt for a class: the raw name as the paper used it, or "spaced" (CamelCase split) for comparison
    with papers that rewrote the names (not comparable with SVD's number)."""
    if style == "raw":
        return class_name
    if style == "spaced":
        return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", class_name)
    raise UserError(f"unknown prompt style '{style}'; choose one of {', '.join(PROMPT_STYLES)}")


def allocate(counts: dict[str, int], total: int) -> dict[str, int]:
    """Split `total` over the classes in proportion to `counts` (largest remainders, ties by class order)."""
    available = sum(counts.values())
    if not 0 < total <= available:
        raise UserError(f"sample count must lie in 1..{available} (the videos in the set), got {total}")
    shares = {name: count * total / available for name, count in counts.items()}
    allocation = {name: int(share) for name, share in shares.items()}
    order = sorted(shares, key=lambda name: -(shares[name] - allocation[name]))
    for name in order[: total - sum(allocation.values())]:
        allocation[name] += 1
    return allocation


@dataclass(frozen=True)
class UCF101Protocol:
    """SVD E.4 as numbers; anything changed from these makes the result not comparable, and says why."""

    num_frames: int = 16
    fps: float = 25.0
    guidance_scale: float = 7.0
    generate_size: tuple[int, int] = (320, 576)
    resize_size: tuple[int, int] = (240, 432)
    crop_size: tuple[int, int] = (240, 320)
    prompt_style: str = "raw"
    num_samples: int | None = None    # None = one generated video per real video (13,320)
    real_start_s: float = 0.0
    motion_bucket_id: int = 127       # not given by the paper (E.4): the released models' sampling default
    seed: int = 0

    def __post_init__(self):
        for name in ("generate_size", "resize_size", "crop_size"):  # config lists compare equal to the paper's
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.prompt_style not in PROMPT_STYLES:
            raise UserError(f"unknown prompt style '{self.prompt_style}'; choose one of {', '.join(PROMPT_STYLES)}")

    def deviations(self, index: UCF101Index) -> list[str]:
        paper = UCF101Protocol()
        reasons = [f"{name}={getattr(self, name)} (paper: {getattr(paper, name)})"
                   for name in ("num_frames", "fps", "guidance_scale", "generate_size", "resize_size", "crop_size",
                                "prompt_style", "real_start_s")
                   if getattr(self, name) != getattr(paper, name)]
        if not index.is_official_size():
            reasons.append(f"dataset has {len(index.videos)} videos in {len(index.classes)} classes "
                           f"(UCF-101: {OFFICIAL_NUM_VIDEOS} in {OFFICIAL_NUM_CLASSES})")
        if self.num_samples is not None and self.num_samples != len(index.videos):
            reasons.append(f"{self.num_samples} samples instead of the protocol's {len(index.videos)} "
                           "(tracking only)")
        return reasons

    def real_selection_rule(self) -> str:
        return (f"first {self.num_frames} frames at {self.fps:g} fps from {self.real_start_s:g} s, nearest decoded "
                f"frame to each target time, native size (other sizes: cover-resize and centre crop to "
                f"{self.crop_size[0]}x{self.crop_size[1]})")

    def generated_preprocessing(self) -> str:
        return (f"generated at {self.generate_size[0]}x{self.generate_size[1]}, antialiased bilinear resize to "
                f"{self.resize_size[0]}x{self.resize_size[1]}, centre crop {self.crop_size[0]}x{self.crop_size[1]}")


@dataclass(frozen=True)
class GenerationSample:
    sample_id: int
    class_name: str
    class_index: int
    prompt: str
    seed: int


@dataclass
class UCF101Plan:
    """What to generate and which real clips to compare against, with everything needed to record it."""

    protocol: UCF101Protocol
    samples: list[GenerationSample]
    real_videos: list[UCF101Video]
    per_class: dict[str, int]
    comparable: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        return "; ".join(self.reasons) or None

    def real_set_id(self, index: UCF101Index) -> str:
        """Names the real reference set (videos + selection rule) for the statistics cache."""
        text = json.dumps([index.fingerprint(), [v.path for v in self.real_videos],
                           self.protocol.real_selection_rule()])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def fvd_protocol(self, index: UCF101Index, extractor_identity: dict) -> FVDProtocol:
        """The key of the real-video statistics: extractor, frames, size, selection rule, count and real set."""
        return FVDProtocol(extractor=extractor_identity, num_frames=self.protocol.num_frames,
                           resolution=tuple(self.protocol.crop_size), preprocessing=self.protocol.real_selection_rule(),
                           num_samples=len(self.real_videos), real_set=self.real_set_id(index))

    def summary(self) -> dict:
        return {"protocol": asdict(self.protocol), "num_samples": len(self.samples),
                "num_real": len(self.real_videos), "per_class": self.per_class, "comparable": self.comparable,
                "reason": self.reason}


def make_plan(index: UCF101Index, protocol: UCF101Protocol = UCF101Protocol()) -> UCF101Plan:
    """Per-class sample counts follow the dataset's (scaled down proportionally for a tracking count); each
    sample gets the raw class name as prompt and its own seed. The real reference is the full set for the
    protocol count, or the same per-class number of real videos (the first of each class) for a tracking count."""
    counts = index.per_class_counts()
    total = protocol.num_samples or len(index.videos)
    per_class = allocate(counts, total) if total != len(index.videos) else counts
    class_index = {name: number for number, name in index.classes.items()}
    samples, real = [], []
    for name, count in per_class.items():
        for _ in range(count):
            samples.append(GenerationSample(len(samples), name, class_index[name],
                                            class_prompt(name, protocol.prompt_style), protocol.seed + len(samples)))
        real.extend([v for v in index.videos if v.class_name == name][:count])
    reasons = protocol.deviations(index)
    return UCF101Plan(protocol, samples, real, per_class, not reasons, reasons)


class ShortVideoError(ValueError):
    """A video that ends before the last frame the protocol asks for."""


@dataclass(frozen=True)
class ClipSelection:
    """Which frames of a real video went into its clip (recorded with the results)."""

    path: str
    frame_indices: tuple[int, ...]
    timestamps: tuple[float, ...]
    native_fps: float
    native_size: tuple[int, int]


def decode_clip(path: str | Path, num_frames: int = 16, fps: float = 25.0,
                start_s: float = 0.0) -> tuple[np.ndarray, ClipSelection]:
    """Decode `num_frames` frames at `fps` from `start_s` with PyAV: upright (T, H, W, 3) uint8 and what was taken.

    Target times are start + k / fps (relative to the first frame); each takes the decoded frame nearest to
    it. Decoding stops after the last target, so a clip at the start of a long video is cheap.
    """
    targets = [start_s + k / fps for k in range(num_frames)]
    frames, indices, times = [], [], []
    previous = None
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise UserError(f"cannot open video {path}: {error}") from None
    with container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or fps)
        first_time = None
        for index, frame in enumerate(container.decode(stream)):
            time = frame.time if frame.time is not None else index / rate
            first_time = time if first_time is None else first_time
            current = (index, time - first_time, upright(frame.to_ndarray(format="rgb24"), quarter_turns(frame)))
            while len(frames) < num_frames and current[1] >= targets[len(frames)]:
                target = targets[len(frames)]
                pick = current if previous is None or current[1] - target <= target - previous[1] else previous
                indices.append(pick[0])
                times.append(round(pick[1], 6))
                frames.append(pick[2])
            if len(frames) == num_frames:
                break
            previous = current
    while len(frames) < num_frames and previous is not None and targets[len(frames)] - previous[1] <= 0.5 / rate:
        indices.append(previous[0])
        times.append(round(previous[1], 6))
        frames.append(previous[2])
    if len(frames) < num_frames:
        raise ShortVideoError(f"{path}: ends before {targets[-1]:.3f} s, the time of frame {num_frames} at {fps:g} fps")
    clip = np.stack(frames)
    return clip, ClipSelection(str(path), tuple(indices), tuple(times), rate, clip.shape[1:3])


def _as_batch(videos: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if videos.ndim == 4:
        return videos[None], True
    if videos.ndim == 5:
        return videos, False
    raise ValueError(f"videos must be (T, 3, H, W) or (B, T, 3, H, W), got shape {tuple(videos.shape)}")


def resize_frames(videos: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of every frame; uint8 stays uint8 (rounded), float stays float."""
    batch, single = _as_batch(videos)
    frames = batch.flatten(0, 1).float()
    resized = F.interpolate(frames, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    if videos.dtype == torch.uint8:
        resized = resized.round().clamp(0, 255).to(torch.uint8)
    resized = resized.unflatten(0, batch.shape[:2])
    return resized[0] if single else resized


def center_crop(videos: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    height, width = videos.shape[-2:]
    if height < size[0] or width < size[1]:
        raise ValueError(f"cannot crop {size[0]}x{size[1]} from frames of {height}x{width}")
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    return videos[..., top : top + size[0], left : left + size[1]]


def preprocess_generated(videos: torch.Tensor, protocol: UCF101Protocol = UCF101Protocol()) -> torch.Tensor:
    """(B, T, 3, 320, 576) -> antialiased bilinear resize to 240x432 -> centre crop 240x320."""
    if tuple(videos.shape[-2:]) != tuple(protocol.generate_size):
        raise ValueError(f"generated frames are {tuple(videos.shape[-2:])}, the protocol generates at "
                         f"{tuple(protocol.generate_size)}")
    return center_crop(resize_frames(videos, protocol.resize_size), protocol.crop_size)


def fit_real_frames(videos: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Real clips at the crop size pass untouched; others are resized to cover it (aspect kept), centre-cropped."""
    height, width = videos.shape[-2:]
    if (height, width) == tuple(size):
        return videos
    scale = max(size[0] / height, size[1] / width)
    covering = (max(size[0], round(height * scale)), max(size[1], round(width * scale)))
    return center_crop(resize_frames(videos, covering), size)


class UCF101RealClips(torch.utils.data.Dataset):
    """The real reference clips of a plan: uint8 (T, 3, H, W) at the crop size, with the frames taken."""

    def __init__(self, index: UCF101Index, videos: list[UCF101Video], protocol: UCF101Protocol = UCF101Protocol()):
        self.index, self.videos, self.protocol = index, videos, protocol

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, item: int) -> dict:
        video = self.videos[item]
        frames, selection = decode_clip(self.index.video_root / video.path, self.protocol.num_frames,
                                        self.protocol.fps, self.protocol.real_start_s)
        clip = fit_real_frames(torch.from_numpy(frames).permute(0, 3, 1, 2), self.protocol.crop_size)
        return {"video": clip.contiguous(), "item": item, "frame_indices": torch.tensor(selection.frame_indices),
                "timestamps": torch.tensor(selection.timestamps, dtype=torch.float64),
                "native_size": torch.tensor(selection.native_size)}
