"""The clip table (SPEC contract): Parquet part files, one per shard of source videos, each with a done marker.

Layout of the output folder (readable with `pyarrow.dataset.dataset(folder)`, which skips names starting with `_`
or `.`):

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

SCORE_COLUMNS = ("clip_score", "aesthetic_score", "ocr_area", "flow_score")
CAPTION_COLUMNS = ("caption_coca", "caption_vblip", "caption_llm", "caption_sidecar")
# clip_score against each caption alone (clip_score combines them), so another combination needs no new CLIP pass
CLIP_SOURCE_COLUMNS = {caption: f"clip_score_{caption.removeprefix('caption_')}" for caption in CAPTION_COLUMNS}

SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("video_path", pa.string()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("start_frame", pa.int64()),
    ("end_frame", pa.int64()),
    ("fps", pa.float64()),
    ("width", pa.int64()),
    ("height", pa.int64()),
    ("num_frames", pa.int64()),
    *[(name, pa.string()) for name in CAPTION_COLUMNS],
    ("caption", pa.string()),
    *[(name, pa.float64()) for name in SCORE_COLUMNS],
    *[(name, pa.float64()) for name in CLIP_SOURCE_COLUMNS.values()],
    ("status", pa.string()),
    ("error", pa.string()),
    *[(f"{name}_config", pa.string()) for name in SCORE_COLUMNS],
    *[(f"{name}_model", pa.string()) for name in SCORE_COLUMNS],
    *[(f"{name}_model", pa.string()) for name in CAPTION_COLUMNS],
    ("clip_path", pa.string()),
])

COLUMN_NOTES = {
    "caption": "the clip's first caption in curation.clip.caption_columns order (clip_score uses all of them)",
    "clip_score": "cosine similarity of CLIP image and caption embeddings, mean over first/middle/last frames, "
                  "combined over every caption in curation.clip.caption_columns (how: clip_score_model)",
    "clip_score_<source>": "the same similarity against that one caption (null where the clip lacks it)",
    "aesthetic_score": "see aesthetic_score_model: classic quality 0..10 or the LAION predictor (about 1..10)",
    "ocr_area": "fraction of the frame covered by detected text boxes, aggregated over first/middle/last frames",
    "flow_score": "mean optical-flow magnitude; units in flow_score_model",
    "*_config": "hash of the configuration of the stage that produced the score",
    "*_model": "what produced the score or caption (model, weights; 'random weights' where they were random)",
    "clip_path": "the physical clip file when curation.split.mode is not none, else null",
}


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
        return f"part-{self.index:05d}"

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
        return self.folder / f"_{shard.name}.done.json"

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


def done_markers(folder: str | Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).glob("_part-*.done.json"))]


def read_clip_table(folder: str | Path) -> pa.Table:
    """The rows of every finished shard, in shard order (parts without a marker are ignored)."""
    folder = Path(folder)
    parts = [folder / f"part-{m['shard']:05d}.parquet" for m in done_markers(folder)]
    if not parts:
        return SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(p, schema=SCHEMA) for p in parts])
