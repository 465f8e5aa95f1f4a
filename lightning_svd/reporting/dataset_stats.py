"""Table 1 cells from a clip table's statistics (computed by lightning_svd/clip_table.py over its `ok` rows)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..clip_table import ClipTable


def clip_table_statistics(path: str | Path) -> dict:
    """Clip count, mean and total duration, mean frames, clips per source video, motion-annotation coverage."""
    return {"path": str(path), **asdict(ClipTable(path).statistics())}


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
