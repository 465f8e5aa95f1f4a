"""Curate a list of videos into a clip-table folder: shards, resume, progress, and the per-shard bookkeeping."""

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..clip_table import OK, STATUSES
from .pipeline import VideoResult
from .table import ClipTableWriter, Shard, config_hash, plan_shards

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def discover_videos(source: str | Path, extensions=VIDEO_EXTENSIONS) -> list[str]:
    """Every file under `source` (recursively) whose extension is listed, as absolute paths, sorted."""
    root = Path(source).expanduser().resolve()
    allowed = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in allowed)


def pipeline_hash(cfg: dict) -> str:
    """Hash of everything that changes the rows (engine, workers and output folder do not)."""
    ignored = ("engine", "workers", "threads_per_worker", "max_tasks_per_worker", "progress", "shard_size", "ray",
               "max_videos", "extensions", "report")
    relevant = {k: v for k, v in cfg.items() if k not in ignored}
    return config_hash(relevant)


@dataclass
class RunSummary:
    folder: Path
    shards: int
    shards_skipped: int
    videos_processed: int
    clips_written: int
    wall_seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)


def _shard_meta(results: list[VideoResult]) -> dict:
    """The done marker's bookkeeping: counts by outcome, seconds per stage (in total and per video), why videos were
    empty or errors, warnings, and the detected cuts."""
    seconds: dict[str, float] = defaultdict(float)
    for result in results:
        for stage, value in result.seconds.items():
            seconds[stage] += value
    return {
        **{f"videos_{status}": sum(r.status == status for r in results) for status in STATUSES},
        "clips": sum(len(r.rows) for r in results if r.status == OK),
        "stage_seconds": {k: round(v, 4) for k, v in seconds.items()},
        "video_seconds": {r.video_path: {k: round(v, 4) for k, v in r.seconds.items()} for r in results},
        "errors": {r.video_path: r.error for r in results if r.error is not None},
        "empty": {r.video_path: r.empty for r in results if r.empty is not None},
        "warnings": {r.video_path: r.warnings for r in results if r.warnings},
        "cuts": {r.video_path: r.cuts for r in results if r.error is None},
    }


def curate_videos(videos: list[str], cfg: dict, folder: str | Path, engine, progress: bool = True,
                  on_shard: Callable[[Shard, list[VideoResult]], None] | None = None) -> RunSummary:
    """Run `engine` over the videos of every unfinished shard and write each shard once all its videos are in."""
    started = time.perf_counter()
    writer = ClipTableWriter(folder, pipeline_hash(cfg))
    shards = plan_shards(videos, int(cfg["shard_size"]))
    pending = [s for s in shards if not writer.is_done(s)]
    shard_of = {video: shard for shard in pending for video in shard.videos}
    collected: dict[int, dict[str, VideoResult]] = defaultdict(dict)
    clips, processed = 0, 0
    stage_seconds: dict[str, float] = defaultdict(float)
    todo = [video for shard in pending for video in shard.videos]
    with tqdm(total=len(todo), unit="video", desc="curate", disable=not progress) as bar:
        for result in engine.run(todo):
            shard = shard_of[result.video_path]
            collected[shard.index][result.video_path] = result
            processed += 1
            clips += sum(1 for row in result.rows if row["status"] == OK)
            for stage, value in result.seconds.items():
                stage_seconds[stage] += value
            bar.update(1)
            bar.set_postfix(clips=clips, clips_per_s=f"{clips / max(bar.format_dict['elapsed'], 1e-9):.2f}")
            if len(collected[shard.index]) == len(shard.videos):
                ordered = [collected[shard.index][video] for video in shard.videos]
                rows = [row for result in ordered for row in result.rows]
                writer.write(shard, rows, _shard_meta(ordered))
                del collected[shard.index]
                if on_shard is not None:
                    on_shard(shard, ordered)
    return RunSummary(Path(folder), len(shards), len(shards) - len(pending), processed, clips,
                      time.perf_counter() - started, dict(stage_seconds))
