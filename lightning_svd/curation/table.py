"""Writing the clip table (its contract: lightning_svd/clip_table.py): Parquet part files, one per shard of source
videos, each with a done marker.

Layout of the output folder (`lightning_svd.clip_table.ClipTable` reads the shards that have a marker):

    part-00000.parquet         rows of the videos of shard 0
    _part-00000.done.json      written last: the shard's fingerprint, counts, stage times and detected cuts

A part file is written under a hidden temporary name and renamed into place, then the marker is written the same
way. A rerun skips every shard whose marker exists with the same fingerprint (same videos, sizes, modification times
and curation config), so a run killed at any moment and started again ends with exactly the table an uninterrupted
run writes. A marker with another fingerprint means the folder belongs to a different input or config.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..clip_table import SCHEMA, done_marker_name, part_name


def empty_row() -> dict:
    return {field.name: None for field in SCHEMA}


def rows_to_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist([{**empty_row(), **row} for row in rows], schema=SCHEMA)


def config_hash(node) -> str:
    return hashlib.sha256(json.dumps(node, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Shard:
    index: int
    videos: tuple[str, ...]

    @property
    def name(self) -> str:
        return part_name(self.index)

    def fingerprint(self, pipeline_hash: str) -> str:
        parts = [pipeline_hash]
        for video in self.videos:
            try:
                stat = os.stat(video)
                parts.append(f"{video}|{stat.st_size}|{stat.st_mtime_ns}")
            except OSError:
                parts.append(f"{video}|missing")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def plan_shards(videos: list[str], shard_size: int) -> list[Shard]:
    if shard_size < 1:
        raise ValueError(f"curation.shard_size must be at least 1, got {shard_size}")
    ordered = sorted(videos)
    starts = range(0, len(ordered), shard_size)
    return [Shard(i, tuple(ordered[start:start + shard_size])) for i, start in enumerate(starts)]


class ShardMismatchError(Exception):
    """The output folder holds shards of another input or configuration."""


class ClipTableWriter:
    """Writes shards atomically and tells which ones are already done."""

    def __init__(self, folder: str | Path, pipeline_hash: str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pipeline_hash = pipeline_hash

    def marker_path(self, shard: Shard) -> Path:
        return self.folder / done_marker_name(shard.index)

    def is_done(self, shard: Shard) -> bool:
        marker = self.marker_path(shard)
        if not marker.is_file():
            return False
        recorded = json.loads(marker.read_text()).get("fingerprint")
        if recorded != shard.fingerprint(self.pipeline_hash):
            raise ShardMismatchError(
                f"{marker} was written for other videos or another curation config; "
                "write to a new curation.output_dir (or delete that folder) to curate this input"
            )
        return True

    def write(self, shard: Shard, rows: list[dict], meta: dict) -> Path:
        target = self.folder / f"{shard.name}.parquet"
        partial = self.folder / f".{shard.name}.parquet.partial"
        pq.write_table(rows_to_table(rows), partial)
        os.replace(partial, target)
        marker, partial_marker = self.marker_path(shard), self.folder / f".{shard.name}.done.json.partial"
        payload = {"shard": shard.index, "fingerprint": shard.fingerprint(self.pipeline_hash),
                   "videos": list(shard.videos), **meta}
        partial_marker.write_text(json.dumps(payload, indent=1))
        os.replace(partial_marker, marker)
        return target
