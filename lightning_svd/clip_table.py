"""The clip table contract (SPEC.md): its schema, column groups, status values, and the one reader every layer uses.

Curation writes the table (curation/table.py); data modules, the ablation, training and reporting read it here, so a
table means the same thing everywhere: which files belong to it, which rows count, what a column's type is and where
a relative `video_path` points. Reading is Arrow-native and by columns: a 10M-row table is never a Python list, and
`ClipTable.batches` streams tables that do not fit in memory. Only pyarrow and numpy are imported, so every layer may
import this module.
"""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from lightning_svd.errors import UserError

# `status`: a clip (ok), a video that decodes but yields no clip long enough (empty), or one that cannot be read
OK, EMPTY, ERROR = "ok", "empty", "error"
STATUSES = (OK, EMPTY, ERROR)

SCORE_COLUMNS = ("clip_score", "aesthetic_score", "ocr_area", "flow_score")
# Caption source (the name configs use, e.g. train.data.caption_probabilities.coca) -> its column
CAPTION_SOURCES = {"coca": "caption_coca", "vblip": "caption_vblip", "llm": "caption_llm", "sidecar": "caption_sidecar"}
CAPTION_COLUMNS = tuple(CAPTION_SOURCES.values())
# clip_score against each caption alone (clip_score combines them), so another combination needs no new CLIP pass
CLIP_SOURCE_COLUMNS = {caption: f"clip_score_{caption.removeprefix('caption_')}" for caption in CAPTION_COLUMNS}


def config_column(score: str) -> str:
    """The column holding the hash of the config of the stage that produced `score`."""
    return f"{score}_config"


def model_column(name: str) -> str:
    """The column naming what produced a score or caption column (model, weights; 'random weights' if random)."""
    return f"{name}_model"


SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("video_path", pa.string()),
    ("start_s", pa.float64()),
    ("end_s", pa.float64()),
    ("start_frame", pa.int64()),
    ("end_frame", pa.int64()),
    ("fps", pa.float64()),
    ("min_frame_interval_s", pa.float64()),
    ("max_frame_interval_s", pa.float64()),
    ("width", pa.int64()),
    ("height", pa.int64()),
    ("num_frames", pa.int64()),
    *[(name, pa.string()) for name in CAPTION_COLUMNS],
    ("caption", pa.string()),
    *[(name, pa.float64()) for name in SCORE_COLUMNS],
    *[(name, pa.float64()) for name in CLIP_SOURCE_COLUMNS.values()],
    ("camera_motion", pa.string()),  # train.data.camera_motion selects clips by it
    ("camera_direction", pa.string()),
    ("camera_motion_confidence", pa.float64()),
    ("status", pa.string()),
    ("error", pa.string()),
    *[(config_column(name), pa.string()) for name in (*SCORE_COLUMNS, "camera_motion")],
    *[(model_column(name), pa.string()) for name in SCORE_COLUMNS],
    *[(model_column(name), pa.string()) for name in CAPTION_COLUMNS],
    ("clip_path", pa.string()),
])

COLUMN_NOTES = {
    "start_s, end_s": "presentation times in seconds from the video's first frame (a variable frame rate is fine)",
    "start_frame, end_frame": "the clip's frames [start_frame, end_frame) in display order, counted from 0",
    "fps": "the clip's mean frame rate (num_frames / (end_s - start_s)); min/max_frame_interval_s show how it varies",
    "width, height": "the displayed frame size (after the video's display rotation, which every reader applies)",
    "status, error": "ok: a clip; empty: the video decodes but yields no clip (why in error); error: unreadable",
    "caption": "the clip's first caption in curation.clip.caption_columns order (clip_score uses all of them)",
    "clip_score": "cosine similarity of CLIP image and caption embeddings, mean over first/middle/last frames, "
                  "combined over every caption in curation.clip.caption_columns (how: clip_score_model)",
    "clip_score_<source>": "the same similarity against that one caption (null where the clip lacks it)",
    "aesthetic_score": "see aesthetic_score_model: classic quality 0..10 or the LAION predictor (about 1..10)",
    "ocr_area": "fraction of the frame covered by detected text boxes, aggregated over first/middle/last frames",
    "flow_score": "mean optical-flow magnitude; units in flow_score_model",
    "camera_motion": "pan (or tilt), zoom, static or complex, from the global motion of the flow fields behind "
                     "flow_score",
    "camera_direction": "a pan's left/right/up/down (where the camera turns; the picture moves the other way), a "
                        "zoom's in/out, else null",
    "camera_motion_confidence": "0..1: static, how far under curation.camera.static_below; pan or zoom, its share of "
                                "the global motion; complex, the share neither holds",
    "*_config": "hash of the configuration of the stage that produced the score",
    "*_model": "what produced the score or caption (model, weights; 'random weights' where they were random)",
    "clip_path": "the physical clip file when curation.split.mode is not none, else null",
}


MARKER_SUFFIX = ".done.json"


def part_name(shard: int) -> str:
    return f"part-{shard:05d}"


def done_marker_name(shard: int) -> str:
    """A shard's done marker: written after its part file, so a part without one is unfinished."""
    return f"_{part_name(shard)}{MARKER_SUFFIX}"


def marker_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"_part-*{MARKER_SUFFIX}"))


def done_markers(folder: str | Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in marker_paths(Path(folder))]


def table_files(path: Path, setting: str | None = None) -> list[Path]:
    """A clip table's part files: the file itself; in a curation folder (it holds done markers) the finished shards in
    shard order; in any other folder every *.parquet below it, names starting with `_` or `.` skipped. `setting`
    names the config key that gave the path, for the message when there is nothing there."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        where = f"set {setting} to" if setting else "give"
        raise UserError(f"clip table not found: {path}; {where} a Parquet file or a folder of part files "
                        "(`python run.py experiment=curate` writes one)")
    markers = marker_paths(path)
    if markers:
        return [path / f"{m.name[1:].removesuffix(MARKER_SUFFIX)}.parquet" for m in markers]
    files = [f for f in sorted(path.rglob("*.parquet"))
             if not any(part.startswith(("_", ".")) for part in f.relative_to(path).parts)]
    if not files:
        raise UserError(f"clip table {path} holds no *.parquet files")
    return files


def unified_schema(files: list[Path]) -> pa.Schema:
    """The columns of every part, contract columns with the contract's type (a part whose column is all null stores
    it as null, and integer scores read as floats); other columns promoted across parts."""
    found = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    contract = {field.name: field.type for field in SCHEMA}
    return pa.schema([(f.name, contract.get(f.name, f.type)) for f in found])


class ClipTable:
    """A clip table on disk (a Parquet file or a folder of part files), read by columns, whole or in batches."""

    def __init__(self, path: str | Path, setting: str | None = None):
        self.path = Path(path).expanduser()
        self.files = table_files(self.path, setting)
        self.root = self.path if self.path.is_dir() else self.path.parent  # relative video paths start here
        self.dataset = ds.dataset([str(f) for f in self.files], schema=unified_schema(self.files), format="parquet")

    @property
    def columns(self) -> list[str]:
        return self.dataset.schema.names

    def require(self, columns: Sequence[str], purpose: str = "") -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            why = f" ({purpose})" if purpose else ""
            raise UserError(f"clip table {self.path} lacks columns {missing}{why}; it must follow the clip-table "
                            "contract in SPEC.md")

    def read(self, columns: Sequence[str] | None = None, ok_only: bool = False) -> pa.Table:
        """The table (or `columns` of it; each must exist), only the `ok` rows when `ok_only`."""
        columns = self._checked(columns, ok_only)
        return self.resolved(self.dataset.to_table(columns=columns, filter=self._filter(ok_only)))

    def batches(self, columns: Sequence[str] | None, batch_rows: int, ok_only: bool = False) -> Iterator[pa.Table]:
        """The table in batches of at most `batch_rows` rows, in file order; memory holds a few batches at a time."""
        columns = self._checked(columns, ok_only)
        scanner = self.dataset.scanner(columns=columns, filter=self._filter(ok_only), batch_size=batch_rows,
                                       batch_readahead=1, fragment_readahead=1)
        for batch in scanner.to_batches():
            if batch.num_rows:
                yield self.resolved(pa.Table.from_batches([batch]))

    def distinct_values(self, column: str) -> list[str]:
        """The distinct non-null values of a string column with few of them (a producer column), read as Parquet
        dictionaries: a pass over the column's dictionary pages, no string per row."""
        read = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=[column]))
        schema = pa.schema([(column, pa.dictionary(pa.int32(), pa.string()))])
        dataset = ds.dataset([str(f) for f in self.files], schema=schema, format=read)
        values = {v for batch in dataset.to_batches(columns=[column]) for v in batch.column(0).dictionary.to_pylist()}
        return sorted(v for v in values if v)

    def _checked(self, columns: Sequence[str] | None, ok_only: bool) -> list[str]:
        self.require(["status"] if ok_only else [])
        if columns is None:
            return list(self.columns)
        self.require(columns)
        return list(columns)

    @staticmethod
    def _filter(ok_only: bool):
        return ds.field("status") == OK if ok_only else None

    def resolved(self, table: pa.Table) -> pa.Table:
        """Relative `video_path`s joined to the table's folder, so they point at the same files from anywhere."""
        if "video_path" not in table.column_names or table.num_rows == 0:
            return table
        paths = table["video_path"]
        relative = pc.invert(pc.starts_with(paths, "/"))
        if not pc.any(relative).as_py():
            return table
        joined = pc.binary_join_element_wise(str(self.root), paths, "/")
        return table.set_column(table.column_names.index("video_path"), "video_path",
                                pc.if_else(relative, joined, paths))

    def statistics(self) -> "TableStatistics":
        """Table 1 statistics of the whole table, reading only the columns they need."""
        wanted = {*STATISTICS_COLUMNS, *(c for pair in DURATION_COLUMNS for c in pair), "flow_score"}
        return table_statistics(self.read([c for c in self.columns if c in wanted]), name=f"clip table {self.path}")


def read_clip_table(path: str | Path, columns: Sequence[str] | None = None, ok_only: bool = False) -> pa.Table:
    return ClipTable(path).read(columns, ok_only)


def ok_rows(table: pa.Table) -> pa.Table:
    """The clips of a table in memory (rows whose status is `ok`), in their order; the table itself (no copy) when
    every row is one."""
    ok = pc.equal(table["status"], OK)
    return table if pc.all(ok).as_py() is not False and ok.null_count == 0 else table.filter(ok)


SECONDS_PER_YEAR = 365.25 * 24 * 3600
STATISTICS_COLUMNS = ("video_path", "num_frames", "status")
DURATION_COLUMNS = (("start_s", "end_s"), ("num_frames", "fps"))  # the first pair a table has gives durations


@dataclass(frozen=True)
class TableStatistics:
    """The paper's Table 1 columns for one clip table or subset, over its `ok` rows; beside them its rows of videos
    that decode but yield no clip (`empty`) and of videos that cannot be read (`error`)."""

    num_clips: int
    num_empty_rows: int
    num_error_rows: int
    num_videos: int
    mean_clip_duration_s: float
    total_duration_s: float
    total_duration_years: float
    mean_num_frames: float
    mean_clips_per_video: float
    motion_annotated_fraction: float


def distinct_count(column: pa.ChunkedArray) -> int:
    """Distinct non-null values; a dictionary column is counted by its indices, so the statistics of many subsets of
    one table hash its strings once (one chunk, or chunks on one dictionary, keeps this a pass over integers)."""
    if not pa.types.is_dictionary(column.type):
        return pc.count_distinct(column).as_py()
    column = (column.unify_dictionaries() if column.num_chunks > 1 else column).drop_null()
    if len(column) == 0:
        return 0
    indices = np.concatenate([chunk.indices.to_numpy() for chunk in column.chunks])
    return int(np.count_nonzero(np.bincount(indices, minlength=len(column.chunk(0).dictionary))))


def _count(column: pa.ChunkedArray, value: str) -> int:
    return int(pc.sum(pc.equal(column, value)).as_py() or 0)


def table_statistics(table: pa.Table, name: str = "clip table") -> TableStatistics:
    """Clip count, mean and total duration, mean frames, clips per source video, motion-annotation coverage.
    Durations come from start_s/end_s, or from num_frames/fps in tables without them (the synthetic corpus')."""
    missing = [c for c in STATISTICS_COLUMNS if c not in table.column_names]
    pair = next((p for p in DURATION_COLUMNS if set(p) <= set(table.column_names)), None)
    if missing or pair is None:
        needed = f"{missing} and " if missing else ""
        raise UserError(f"{name} lacks columns {needed}start_s/end_s or fps for durations (see the clip-table "
                        "contract in SPEC.md)")
    ok = ok_rows(table)
    if ok.num_rows == 0:
        raise UserError(f"{name} has no rows with status 'ok'")
    if pair == ("start_s", "end_s"):
        durations = pc.subtract(ok["end_s"], ok["start_s"])
    else:
        durations = pc.divide(pc.cast(ok["num_frames"], pa.float64()), ok["fps"])
    total = pc.sum(durations).as_py() or 0.0
    videos = distinct_count(ok["video_path"])
    annotated = ok["flow_score"].length() - ok["flow_score"].null_count if "flow_score" in ok.column_names else 0
    return TableStatistics(
        num_clips=ok.num_rows,
        num_empty_rows=_count(table["status"], EMPTY),
        num_error_rows=_count(table["status"], ERROR),
        num_videos=videos,
        mean_clip_duration_s=float(pc.mean(durations).as_py()),
        total_duration_s=float(total),
        total_duration_years=float(total / SECONDS_PER_YEAR),
        mean_num_frames=float(pc.mean(ok["num_frames"]).as_py()),
        mean_clips_per_video=ok.num_rows / videos,
        motion_annotated_fraction=annotated / ok.num_rows,
    )
