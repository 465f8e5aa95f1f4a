"""Precomputed training data: shards of a clip table encoded once (task `precompute`), and the DataModule that trains
from them (`train.data.shards=PATH`).

A sample is one window of a clip as the online clip DataModule would cut it (same stride and start rule, seeded per
window): the autoencoder posterior's `latent_mean` and `latent_std` (T, C, h, w) (a training step draws mean + std *
noise), the per-clip outputs of the stage's frozen embedders under their precomputed keys (`txt_embedding`: one per
caption source, with the captions; `image_embedding`: CLIP of the conditioning frame, with that `first_frame` for
the noise-augmented concat input), and `fps`, `fps_id` (fps / stride - 1), `flow_score` (mapped to motion_bucket_id
by the training run's buckets), `clip_id`, `sample_seed`.

Format: litdata (Lightning AI's chunked binary format). Chosen over WebDataset because its index gives random access
to any sample of a local or object-store dataset: the order of an epoch is then a pure function of (seed, epoch), so
every rank takes a disjoint share of one permutation and a run resumed mid-epoch skips exactly the batches its
checkpoint's step counter says were consumed. WebDataset tars are read front to back through shuffle buffers, which
gives neither (per-rank splits are by whole tar, resume restarts the stream). litdata's own streaming loader resumes
too, but batches only within a stream and shuffles by chunk; the (resolution, frames) buckets need batches drawn
from one bucket at a time, so the sampler here is ours and litdata stores and serves the samples.

Layout: `<shards>/<H>x<W>x<T>/part-NNNNN/` (a litdata dataset each, written under a `.partial` name and renamed
when complete, so an interrupted precompute resumes at the first missing part) and `<shards>/manifest.json`,
written last: what made the shards (clip table, stage, encoder weight digests) and each bucket's parts.
"""

import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from litdata import StreamingDataset
from litdata.streaming.writer import BinaryWriter
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from data_modules.clips import CaptionSampler
from lightning_svd.errors import UserError

MANIFEST = "manifest.json"
FORMAT = "lightning-svd shards v1 (litdata)"


def bucket_name(height: int, width: int, num_frames: int) -> str:
    return f"{height}x{width}x{num_frames}"


def write_part(folder: Path, samples: Sequence[Mapping]) -> None:
    """Write one part (a litdata dataset) atomically: under `<folder>.partial`, renamed to `folder` when done."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    writer = BinaryWriter(str(partial), chunk_bytes="64MB")
    for index, sample in enumerate(samples):
        writer[index] = dict(sample)
    writer.done()
    writer.merge(1)
    partial.rename(folder)


def find_manifest(path: str | Path) -> Path:
    """The manifest of a shards folder or of the precompute run dir holding one."""
    path = Path(path).expanduser()
    for candidate in (path / MANIFEST, path / "shards" / MANIFEST):
        if candidate.is_file():
            return candidate
    raise UserError(f"no complete shards at {path} (no {MANIFEST}); set train.data.shards to the shards folder or "
                    "the run dir of a finished `precompute` run")


def read_manifest(path: str | Path) -> dict:
    manifest_path = find_manifest(path)
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise UserError(f"{manifest_path} is not a shards manifest of this version ({FORMAT}); precompute again")
    manifest["root"] = str(manifest_path.parent)
    return manifest


class ShardDataset(Dataset):
    """The samples of every bucket's parts, numbered bucket after bucket; indexed by a batch of `(index, seed)`
    keys (see `BucketBatchSampler`), it returns the collated batch, float32, with the caption drawn per seed."""

    def __init__(self, manifest: Mapping, motion_buckets: Callable, caption_probabilities: Mapping[str, float]):
        root = Path(manifest["root"])
        self.folders: list[Path] = []
        self.offsets: list[int] = []
        self.bucket_ranges: list[range] = []
        total = 0
        for bucket in manifest["buckets"]:
            start = total
            for part, size in zip(bucket["parts"], bucket["part_sizes"]):
                self.folders.append(root / part)
                self.offsets.append(total)
                total += size
            self.bucket_ranges.append(range(start, total))
        self.size = total
        self.parts: dict[int, StreamingDataset] = {}  # opened on first use (a large table has many parts)
        self.motion_buckets = motion_buckets
        self.captions = CaptionSampler(caption_probabilities)

    def __len__(self) -> int:
        return self.size

    def sample(self, index: int, seed: int) -> dict:
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        if part not in self.parts:
            self.parts[part] = StreamingDataset(str(self.folders[part]))
        stored = self.parts[part][index - self.offsets[part]]
        flow = float(stored["flow_score"])
        item = {"latent_mean": stored["latent_mean"].float(), "latent_std": stored["latent_std"].float(),
                "fps_id": torch.tensor(float(stored["fps_id"])),
                "motion_bucket_id": torch.tensor(float(self.motion_buckets(None if np.isnan(flow) else flow))),
                "clip_id": stored["clip_id"], "txt": ""}
        if "captions" in stored:
            caption = self.captions(stored["captions"], np.random.default_rng(seed))
            embeddings = {stored["captions"][column]: stored["txt_embedding"][column] for column in stored["captions"]}
            item["txt"], item["txt_embedding"] = caption, embeddings[caption].float()
        for key in ("image_embedding", "first_frame"):
            if key in stored:
                item[key] = stored[key].float()
        return item

    def __getitem__(self, keys: Sequence[tuple[int, int]]) -> dict:
        return default_collate([self.sample(index, seed) for index, seed in keys])


class BucketBatchSampler(Sampler):
    """Yields this rank's batches of `(index, seed)` keys, each batch from one bucket.

    Per epoch, one generator seeded by (seed, epoch) permutes every bucket, cuts it into full batches and shuffles
    the batches of all buckets together; rank r takes batches r, r + world, ... (the same count on every rank, so
    ranks hold disjoint samples and step together). `batches_done()` (if given) says how many of this epoch's
    batches earlier steps consumed: a run resumed mid-epoch starts after them.
    """

    def __init__(self, buckets: Sequence[range], batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 batches_done: Callable[[], int] | None = None):
        self.buckets, self.batch_size, self.seed = list(buckets), batch_size, seed
        self.rank, self.world_size, self.batches_done = rank, world_size, batches_done
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(len(bucket) // self.batch_size for bucket in self.buckets) // self.world_size

    def epoch_batches(self) -> list[np.ndarray]:
        """Every rank's batches of this epoch, in order."""
        rng = np.random.default_rng((self.seed, self.epoch))
        batches = []
        for bucket in self.buckets:
            order = bucket.start + rng.permutation(len(bucket))
            batches += [order[i : i + self.batch_size] for i in range(0, len(order) - self.batch_size + 1,
                                                                       self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        mine = self.epoch_batches()[self.rank :: self.world_size][: len(self)]
        skip = min(self.batches_done(), len(self)) if self.batches_done is not None else 0
        for number in range(skip, len(self)):
            position = number * self.world_size + self.rank
            base = ((self.seed * 1_000_003 + self.epoch) * 1_000_003 + position) * 1_009
            yield [(int(index), base + slot) for slot, index in enumerate(mine[number])]


class ShardDataModule(L.LightningDataModule):
    """Trains from precomputed shards (see the module docstring). `references` is the online clip DataModule of the
    table the shards came from: callbacks that show or score samples read their reference clips (pixels) from it."""

    def __init__(self, shards: str | Path, motion_buckets: Callable, batch_size: int = 2, num_workers: int = 0,
                 caption_probabilities: Mapping[str, float] | None = None, seed: int = 0, references=None):
        super().__init__()
        self.manifest = read_manifest(shards)
        self.motion_buckets = motion_buckets
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.caption_probabilities = dict(caption_probabilities or {})
        self.references = references
        self.table = self.manifest["clip_table"]
        self.shards: ShardDataset | None = None
        self.sampler: BucketBatchSampler | None = None

    @property
    def dataset(self):
        """The reference clips' dataset (decoded from the source table), as callbacks expect of a DataModule."""
        if self.references is None:
            raise UserError("callbacks that show or score samples need the clip table the shards were made from")
        self.references.setup()
        return self.references.dataset

    def setup(self, stage: str | None = None) -> None:
        if self.shards is None:
            self.shards = ShardDataset(self.manifest, self.motion_buckets, self.caption_probabilities)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        self.sampler = BucketBatchSampler(self.shards.bucket_ranges, self.batch_size, self.seed, rank, world,
                                          batches_done=self.batches_done)
        if len(self.sampler) == 0:
            sizes = {bucket["name"]: bucket["samples"] for bucket in self.manifest["buckets"]}
            raise UserError(f"the shards' buckets {sizes} hold no full batch of {self.batch_size} for each of {world} "
                            "processes: lower train.data.batch_size or precompute more clips")
        # Each sampler item is a whole batch of keys, collated by the dataset (batch_size=None): Lightning then
        # hands the sampler its epoch.
        return DataLoader(self.shards, sampler=self.sampler, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def batches_done(self) -> int:
        """This rank's batches the current epoch's optimizer steps consumed (0 unless resumed mid-epoch)."""
        trainer = self.trainer
        if trainer is None:
            return 0
        batches = trainer.global_step * trainer.accumulate_grad_batches - trainer.current_epoch * len(self.sampler)
        return max(batches, 0)
