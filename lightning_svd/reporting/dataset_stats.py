"""Table 1-style statistics of a clip table (the Parquet contract in SPEC.md), over its `ok` rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError

SECONDS_PER_YEAR = 365.25 * 24 * 3600
REQUIRED_COLUMNS = ("clip_id", "video_path", "num_frames", "status")
DURATION_COLUMNS = (("start_s", "end_s"), ("num_frames", "fps"))  # the first pair a table has gives durations
OPTIONAL_COLUMNS = ("start_s", "end_s", "fps", "flow_score")


def read_clip_table(path: str | Path) -> dict[str, list]:
    """The columns the statistics need from a Parquet file or a folder of part files (every `*.parquet` below
    it; a part whose column is all null has a null type, so parts are joined as Python lists). Durations come
    from start_s/end_s, or from num_frames/fps in tables without them (the synthetic corpus' ground truth)."""
    import pyarrow.parquet as pq

    path = Path(path).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.rglob("*.parquet"))
    else:
        raise UserError(f"clip table not found: {path}; give a Parquet file or a folder of part files")
    if not files:
        raise UserError(f"{path} holds no *.parquet files")
    tables = [pq.read_table(f) for f in files]
    present = set.intersection(*(set(t.column_names) for t in tables))
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing or not any(set(pair) <= present for pair in DURATION_COLUMNS):
        needed = f"{missing} and " if missing else ""
        raise UserError(f"clip table {path} lacks columns {needed}start_s/end_s or fps for durations (see the "
                        "clip-table contract in SPEC.md)")
    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in present]
    return {c: [value for t in tables for value in t.column(c).to_pylist()] for c in columns}


def clip_table_statistics(path: str | Path) -> dict:
    """Clip count, mean and total duration, mean frames, clips per source video, motion-annotation coverage."""
    return {"path": str(path), **column_statistics(read_clip_table(path), name=str(path))}


def _durations(table: dict[str, list], rows: list[int]) -> np.ndarray:
    if "start_s" in table and "end_s" in table:
        return np.array([table["end_s"][i] - table["start_s"][i] for i in rows], dtype=np.float64)
    return np.array([table["num_frames"][i] / table["fps"][i] for i in rows], dtype=np.float64)


def column_statistics(table: dict[str, list], name: str = "clip table") -> dict:
    """The statistics of a clip table given as columns (any table or subset in memory, e.g. an ablation arm)."""
    ok = [i for i, status in enumerate(table["status"]) if status == "ok"]
    if not ok:
        raise UserError(f"{name} has no rows with status 'ok'")
    durations = _durations(table, ok)
    frames = np.array([table["num_frames"][i] for i in ok], dtype=np.float64)
    videos = {table["video_path"][i] for i in ok}
    flow = table.get("flow_score", [None] * len(table["status"]))
    with_motion = sum(flow[i] is not None for i in ok)
    return {
        "num_clips": len(ok),
        "num_error_rows": len(table["status"]) - len(ok),
        "num_videos": len(videos),
        "mean_clip_duration_s": float(durations.mean()),
        "total_duration_s": float(durations.sum()),
        "total_duration_years": float(durations.sum() / SECONDS_PER_YEAR),
        "mean_num_frames": float(frames.mean()),
        "mean_clips_per_video": len(ok) / len(videos),
        "motion_annotated_fraction": with_motion / len(ok),
    }


def format_count(count: int) -> str:
    for divisor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= divisor:
            return f"{count / divisor:.3g}{suffix}"
    return str(count)


def table1_cells(stats: dict) -> dict[str, str]:
    """Our column of Table 1 (total duration also in hours, since small tables round to 0.00 years)."""
    motion = stats["motion_annotated_fraction"]
    hours = stats["total_duration_s"] / 3600
    return {
        "#Clips": format_count(stats["num_clips"]),
        "Clip duration (s)": f"{stats['mean_clip_duration_s']:.2f}",
        "Total duration (years)": f"{stats['total_duration_years']:.3g} ({hours:.3g} h)",
        "Mean #frames": f"{stats['mean_num_frames']:.0f}",
        "Mean clips/video": f"{stats['mean_clips_per_video']:.2f}",
        "Motion annotations?": "yes" if motion == 1 else ("no" if motion == 0 else f"{100 * motion:.0f} %"),
    }
