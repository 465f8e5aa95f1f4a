"""The clip DataModule: T frames of a curated clip at a random stride, resized and centre-cropped, a caption.

Reads the `ok` rows of the clip table through lightning_svd/clip_table.py (an Arrow table, indexed per sample, never
a list of Python rows) and decodes each sample's frames with PyAV. A sample is
`{"video": (T, 3, H, W) in [-1, 1], "txt", "fps_id", "motion_bucket_id", "clip_id"}` where
fps_id = fps / stride - 1 (the released models' convention) and motion_bucket_id comes from flow_score
through the model's `MotionBuckets`. Captions are drawn with p = 0.5 / 0.25 / 0.25 over CoCa / VideoBLIP /
LLM, renormalised over those present.

Every sample's randomness (stride, start, caption) comes from a seed the sampler hands out with its index:
(seed, epoch, position), so samples do not depend on worker count or order, and each rank of a DDP run
draws its own share of one shared permutation.
"""

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from data_modules.motion_buckets import MotionBuckets
from lightning_svd.clip_table import CAPTION_SOURCES, ClipTable
from lightning_svd.errors import UserError
from lightning_svd.video import read_frames

REQUIRED_COLUMNS = ("clip_id", "video_path", "start_frame", "end_frame", "fps", "status")
PAPER_CAPTION_PROBABILITIES = {"coca": 0.5, "vblip": 0.25, "llm": 0.25, "sidecar": 0.5}  # E.2.2, + dataset's own


def read_clips(path: str | Path) -> pa.Table:
    """The `ok` rows of a clip table (a Parquet file or a folder of part files) that a sample can be drawn from."""
    table = ClipTable(path, setting="train.data.table")
    table.require(REQUIRED_COLUMNS, "the clip DataModule reads them")
    return table.read(ok_only=True)


class CaptionSampler:
    """One caption per sample: each source with its probability, renormalised over the non-empty ones."""

    def __init__(self, probabilities: Mapping[str, float]):
        unknown = sorted(set(probabilities) - set(CAPTION_SOURCES))
        if unknown:
            raise UserError(f"unknown caption sources {unknown}; valid: {sorted(CAPTION_SOURCES)}")
        self.probabilities = {CAPTION_SOURCES[k]: float(p) for k, p in probabilities.items()}

    def __call__(self, row: Mapping, rng: np.random.Generator) -> str:
        present = [(c, p) for c, p in self.probabilities.items() if row.get(c) and p > 0]
        if not present:
            return ""
        weights = np.array([p for _, p in present])
        return row[present[rng.choice(len(present), p=weights / weights.sum())][0]]


def resize_and_crop(frames: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(T, h, w, 3) uint8 -> (T, 3, height, width) in [-1, 1]: antialiased resize to cover, centre crop."""
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    scale = max(height / video.shape[2], width / video.shape[3])
    size = (max(height, round(video.shape[2] * scale)), max(width, round(video.shape[3] * scale)))
    video = F.interpolate(video, size=size, mode="bilinear", align_corners=False, antialias=True)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return video[:, :, top : top + height, left : left + width].clamp(-1.0, 1.0).contiguous()


class ClipDataset(Dataset):
    """Map-style dataset indexed by `(row index, sample seed)` pairs (see `SeededSampler`)."""

    def __init__(
        self,
        table: pa.Table,
        num_frames: int,
        height: int,
        width: int,
        strides: Sequence[int],
        captions: CaptionSampler,
        motion_buckets: MotionBuckets,
        cache_clips: bool = False,
    ):
        self.num_frames, self.height, self.width = num_frames, height, width
        self.cached_clips: dict[int, torch.Tensor] | None = {} if cache_clips else None
        self.strides = sorted(int(s) for s in strides)
        if not self.strides or self.strides[0] < 1:
            raise UserError(f"train.data.strides must be positive integers, got {list(strides)}")
        lengths = pc.subtract(table["end_frame"], table["start_frame"])
        self.table = table.filter(pc.greater_equal(lengths, self.span_needed(self.strides[0]))).combine_chunks()
        if self.table.num_rows == 0:
            raise UserError(
                f"no clip in the table is long enough for {num_frames} frames at stride {self.strides[0]}; "
                "use fewer frames (train.num_frames) or a table with longer clips"
            )
        self.captions = captions
        self.motion_buckets = motion_buckets

    def span_needed(self, stride: int) -> int:
        return (self.num_frames - 1) * stride + 1

    def __len__(self) -> int:
        return self.table.num_rows

    def row(self, index: int) -> dict:
        return self.table.slice(index, 1).to_pylist()[0]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        rng = np.random.default_rng(seed)
        row = self.row(index)
        length = row["end_frame"] - row["start_frame"]
        stride = int(rng.choice([s for s in self.strides if self.span_needed(s) <= length]))
        start = row["start_frame"] + int(rng.integers(0, length - self.span_needed(stride) + 1))
        return {
            "video": self.frames(row, index, start, stride),
            "txt": self.captions(row, rng),
            "fps_id": torch.tensor(float(row["fps"]) / stride - 1.0),
            "motion_bucket_id": torch.tensor(float(self.motion_buckets(row.get("flow_score")))),
            "clip_id": str(row["clip_id"]),
        }

    def frames(self, row: dict, index: int, start: int, stride: int) -> torch.Tensor:
        """`num_frames` frames of `row` (the table's row `index`) from `start` every `stride`, resized; from memory
        when clips are cached."""
        if self.cached_clips is None:
            frames = resize_and_crop(read_frames(row["video_path"], start, start + self.span_needed(stride), stride),
                                     self.height, self.width)
        else:
            if index not in self.cached_clips:
                clip = read_frames(row["video_path"], row["start_frame"], row["end_frame"])
                self.cached_clips[index] = resize_and_crop(clip, self.height, self.width)
            offset = start - row["start_frame"]
            frames = self.cached_clips[index][offset : offset + self.span_needed(stride) : stride]
        if len(frames) != self.num_frames:
            raise UserError(
                f"{row['video_path']} gave {len(frames)} of {self.num_frames} frames at {start}:{stride}; "
                "its clip-table span is past the end of the video"
            )
        return frames


class SeededSampler(Sampler):
    """Yields this rank's `(index, seed)` pairs of one seeded permutation per epoch (padded to split evenly).

    `samples_done()` (if given) says how many of this epoch's samples earlier steps already consumed: an
    epoch entered part-way (a run resumed mid-epoch) skips them, so it continues where the interrupted run
    stopped instead of repeating the epoch's first batches.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 samples_done=None):
        self.size, self.seed, self.rank, self.world_size, self.shuffle = size, seed, rank, world_size, shuffle
        self.samples_done = samples_done
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.size // self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(self.size) if self.shuffle else np.arange(self.size)
        padded = np.resize(order, len(self) * self.world_size)
        skip = 0
        if self.samples_done is not None:
            skip = min(self.samples_done(), len(self))
        for position in range(self.rank + skip * self.world_size, len(padded), self.world_size):
            sample_seed = (self.seed * 1_000_003 + self.epoch) * 1_000_003 + position
            yield int(padded[position]), sample_seed


class ClipDataModule(L.LightningDataModule):
    """Clips of `num_frames` frames at `height` x `width` from a clip table (see the module docstring)."""

    def __init__(
        self,
        table: str | Path,
        num_frames: int,
        height: int,
        width: int,
        motion_buckets: MotionBuckets,
        strides: Sequence[int] = (1, 2, 3),
        batch_size: int = 2,
        num_workers: int = 0,
        caption_probabilities: Mapping[str, float] | None = None,
        camera_motion: str | None = None,
        camera_directions: Sequence[str] | None = None,
        seed: int = 0,
        cache_clips: bool = False,
    ):
        super().__init__()
        self.cache_clips = cache_clips
        self.table = table
        self.num_frames, self.height, self.width = num_frames, height, width
        self.motion_buckets = motion_buckets
        self.strides = list(strides)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.captions = CaptionSampler(caption_probabilities or PAPER_CAPTION_PROBABILITIES)
        self.camera_motion = camera_motion
        self.camera_directions = list(camera_directions) if camera_directions else None
        self.seed = seed
        self.dataset: ClipDataset | None = None

    def clips(self) -> pa.Table:
        clips = read_clips(self.table)
        if self.camera_motion is not None:
            if "camera_motion" in clips.column_names:
                clips = clips.filter(pc.equal(clips["camera_motion"], self.camera_motion))
            if "camera_motion" not in clips.column_names or clips.num_rows == 0:
                raise UserError(f"no clip with camera_motion={self.camera_motion!r} in {self.table}")
        if self.camera_directions is not None:
            if "camera_direction" in clips.column_names:
                clips = clips.filter(pc.is_in(clips["camera_direction"], value_set=pa.array(self.camera_directions)))
            if "camera_direction" not in clips.column_names or clips.num_rows == 0:
                raise UserError(f"no clip with a camera_direction in {self.camera_directions} in {self.table}: curate "
                                "with camera labels (curation.camera), or unset train.data.camera_directions")
        return clips

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = ClipDataset(self.clips(), self.num_frames, self.height, self.width, self.strides,
                                       self.captions, self.motion_buckets, self.cache_clips)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if len(self.dataset) // world < self.batch_size:
            raise UserError(f"{self.table} has {len(self.dataset)} clips, fewer than a batch of {self.batch_size} "
                            f"on each of {world} processes: lower train.data.batch_size or add clips")
        sampler = SeededSampler(len(self.dataset), self.seed, rank, world, samples_done=self.samples_done)
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          drop_last=True, persistent_workers=self.num_workers > 0)

    def samples_done(self) -> int:
        """This rank's samples the current epoch's optimizer steps consumed (0 unless resumed mid-epoch)."""
        trainer = self.trainer
        if trainer is None:
            return 0
        batches_per_epoch = -(-len(self.dataset) // trainer.world_size) // self.batch_size
        batches = trainer.global_step * trainer.accumulate_grad_batches - trainer.current_epoch * batches_per_epoch
        return max(batches, 0) * self.batch_size


class ImageDataModule(ClipDataModule):
    """Single frames of the clips as images (clips of T = 1) for the image stage."""

    def __init__(self, table: str | Path, height: int, width: int, motion_buckets: MotionBuckets, **kwargs):
        kwargs.pop("num_frames", None)
        kwargs["strides"] = [1]
        super().__init__(table, 1, height, width, motion_buckets, **kwargs)
