"""The curation report: what happened to each video, counts, time per stage, score summaries and histograms, quality.

Every video ends `ok` (clips), `empty` (it decodes but yields no clip long enough) or `error` (it cannot be read);
the two are counted apart so "nothing usable" never reads as "could not read". Warnings (a caption sidecar that could
not be read) cost no clip and are listed per video. Everything is read back from the finished table and its done
markers, so a resumed run reports on the whole table, not only on the shards it processed itself.
"""

import os
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw, ImageFont

from ..clip_table import CAPTION_COLUMNS, EMPTY, ERROR, OK, SCORE_COLUMNS


def score_values(table: pa.Table) -> dict[str, np.ndarray]:
    ok = [s == OK for s in table.column("status").to_pylist()]
    values = {}
    for name in SCORE_COLUMNS:
        column = table.column(name).to_pylist()
        values[name] = np.array([v for v, good in zip(column, ok) if good and v is not None], dtype=np.float64)
    return values


def models_used(table: pa.Table) -> dict[str, list[str]]:
    """What produced each score and caption column (`<column>_model`), distinct values."""
    return {name: sorted({m for m in table.column(f"{name}_model").to_pylist() if m})
            for name in (*SCORE_COLUMNS, *CAPTION_COLUMNS)}


def video_outcomes(table: pa.Table, markers: list[dict]) -> list[dict]:
    """One record per video, in shard order: its status, clips, why it has none, warnings, seconds per stage."""
    clips = Counter(path for path, status in zip(table.column("video_path").to_pylist(),
                                                 table.column("status").to_pylist()) if status == OK)
    outcomes = []
    for marker in markers:
        errors, empty = marker["errors"], marker.get("empty", {})
        for video in marker["videos"]:
            status = ERROR if video in errors else EMPTY if video in empty else OK
            outcomes.append({"video": video, "status": status, "clips": clips.get(video, 0),
                             "reason": errors.get(video) or empty.get(video),
                             "warnings": marker.get("warnings", {}).get(video, []),
                             "seconds": marker.get("video_seconds", {}).get(video, {})})
    return outcomes


def summarize(table: pa.Table, markers: list[dict]) -> dict:
    status = table.column("status").to_pylist()
    seconds: dict[str, float] = defaultdict(float)
    cut_levels: dict[str, int] = defaultdict(int)
    for marker in markers:
        for stage, value in marker["stage_seconds"].items():
            seconds[stage] += value
        for cuts in marker["cuts"].values():
            for cut in cuts:
                cut_levels[cut["level"]] += 1
    videos = video_outcomes(table, markers)
    outcome = Counter(v["status"] for v in videos)
    counts = {
        "videos": len(videos),
        "videos_ok": outcome[OK],
        "videos_empty": outcome[EMPTY],
        "videos_error": outcome[ERROR],
        "videos_with_warnings": sum(bool(v["warnings"]) for v in videos),
        "cuts": sum(cut_levels.values()),
        "cuts_by_level": dict(cut_levels),
        "clips": sum(s == OK for s in status),
        "shards": len(markers),
    }
    if "camera_motion" in table.column_names:  # parts written before camera labels existed lack the column
        counts["clips_by_camera_motion"] = dict(Counter(
            m for s, m in zip(status, table.column("camera_motion").to_pylist()) if s == OK and m))
    for name in CAPTION_COLUMNS:
        counts[f"clips_with_{name}"] = sum(s == OK and c is not None
                                           for s, c in zip(status, table.column(name).to_pylist()))
    scores = {}
    for name, values in score_values(table).items():
        counts[f"clips_with_{name}"] = int(len(values))
        if len(values):
            scores[name] = {"min": float(values.min()), "median": float(np.median(values)),
                            "max": float(values.max()), "mean": float(values.mean())}
    return {"counts": counts, "stage_seconds": {k: round(v, 3) for k, v in seconds.items()},
            "errors": {v["video"]: v["reason"] for v in videos if v["status"] == ERROR},
            "empty": {v["video"]: v["reason"] for v in videos if v["status"] == EMPTY},
            "warnings": {v["video"]: v["warnings"] for v in videos if v["warnings"]},
            "videos": videos, "scores": scores, "models": models_used(table)}


def headline(report: dict) -> str:
    """The run in one sentence: videos by outcome, clips, warnings."""
    counts = report["counts"]
    return (f"{counts['videos']} videos: {counts['videos_ok']} ok ({counts['clips']} clips), {counts['videos_empty']} "
            f"empty (decode, but no clip long enough), {counts['videos_error']} errors (cannot be read), "
            f"{counts['videos_with_warnings']} with warnings")


def problem_lines(report: dict, limit: int | None = 10) -> list[str]:
    """One line per video that is empty, an error or has warnings (at most `limit`, then how many more)."""
    videos = report["videos"]
    root = _common_folder([v["video"] for v in videos])
    lines = [f"{v['status']}: {os.path.relpath(v['video'], root)}: {v['reason']}" for v in videos if v["reason"]]
    lines += [f"warning: {os.path.relpath(v['video'], root)}: {w}" for v in videos for w in v["warnings"]]
    if limit is not None and len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more in curation_report.md"]
    return lines


def _common_folder(paths: list[str]) -> str:
    folders = [os.path.dirname(p) for p in paths]
    return os.path.commonpath(folders) if folders and all(os.path.isabs(f) for f in folders) else os.curdir


def _video_table(report: dict, limit: int) -> list[str]:
    """Per video: outcome, clips, seconds per stage and what went wrong; problems first, at most `limit` rows."""
    stages = list(report["stage_seconds"])
    videos = sorted(report["videos"], key=lambda v: (v["status"] == OK, not v["warnings"]))
    root = _common_folder([v["video"] for v in videos])
    lines = [f"Under `{root}`; seconds per stage of each video.", "",
             "| video | outcome | clips | " + " | ".join(stages) + " | why / warnings |",
             "|---|---|---|" + "---|" * len(stages) + "---|"]
    for video in videos[:limit]:
        note = "; ".join(filter(None, [video["reason"], *video["warnings"]])).replace("|", "/")
        times = " | ".join(f"{video['seconds'].get(stage, 0.0):.2f}" for stage in stages)
        lines.append(f"| `{os.path.relpath(video['video'], root)}` | {video['status']} | {video['clips']} | {times} "
                     f"| {note} |")
    if len(videos) > limit:
        lines.append(f"| {len(videos) - limit} more, all ok without warnings (every video: curation_report.json) |")
    return lines


def histogram_image(values: dict[str, np.ndarray], bins: int = 20, panel: tuple[int, int] = (360, 220)) -> Image.Image:
    """A 2x2 sheet of score histograms (PIL only)."""
    width, height = panel
    sheet = Image.new("RGB", (2 * width, 2 * height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for index, name in enumerate(SCORE_COLUMNS):
        left, top = (index % 2) * width, (index // 2) * height
        data = values.get(name, np.array([]))
        draw.text((left + 10, top + 6), f"{name} (n={len(data)})", fill="black", font=font)
        box = (left + 30, top + 26, left + width - 12, top + height - 30)
        draw.rectangle(box, outline="grey")
        if not len(data):
            draw.text((box[0] + 10, box[1] + 10), "not computed", fill="grey", font=font)
            continue
        low, high = float(data.min()), float(data.max())
        counts, _ = np.histogram(data, bins=bins, range=(low, high if high > low else low + 1e-6))
        bar_width = (box[2] - box[0]) / bins
        for b, count in enumerate(counts):
            bar_height = (box[3] - box[1] - 4) * count / max(counts.max(), 1)
            x0 = box[0] + b * bar_width
            draw.rectangle((x0 + 1, box[3] - bar_height, x0 + bar_width - 1, box[3]), fill=(70, 110, 190))
        draw.text((box[0], box[3] + 4), f"{low:.3g}", fill="black", font=font)
        draw.text((box[2] - 40, box[3] + 4), f"{high:.3g}", fill="black", font=font)
        draw.text((left + 4, box[1]), str(int(counts.max())), fill="black", font=font)
    return sheet


def render_markdown(report: dict) -> str:
    counts, seconds = report["counts"], report["stage_seconds"]
    lines = ["# Curation report", "", f"**{headline(report)}.**", "", f"Clip table: `{report['table']}` "
             f"({counts['clips']} clips from {counts['videos']} videos, {counts['shards']} shards)", "",
             "## Videos", "", *_video_table(report, limit=50), "", "## Counts", "", "| stage | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.items()]
    total = sum(seconds.values()) or 1.0
    lines += ["", "## Time per stage (seconds, summed over workers)", "", "| stage | seconds | share |",
              "|---|---|---|"]
    lines += [f"| {k} | {v} | {v / total:.0%} |" for k, v in seconds.items()]
    run = report["this_run"]
    lines += ["", f"This run: {run['videos_processed']} videos processed, {run['shards_skipped']} finished shards "
              f"skipped, {run['wall_seconds']:.1f} s wall, {run['clips_per_second']:.2f} clips/s."]
    lines += ["", "## Scores", "", "| score | min | median | max | produced by |", "|---|---|---|---|---|"]
    for name in SCORE_COLUMNS:
        stats, models = report["scores"].get(name), "; ".join(report["models"].get(name, [])) or "off"
        if stats:
            lines.append(f"| {name} | {stats['min']:.4g} | {stats['median']:.4g} | {stats['max']:.4g} | {models} |")
        else:
            lines.append(f"| {name} | | | | {models} |")
    lines += ["", "![score histograms](score_histograms.png)"]
    lines += ["", "## Captions", "", "| caption | clips | produced by |", "|---|---|---|"]
    for name in CAPTION_COLUMNS:
        models = "; ".join(report["models"].get(name, [])) or "off"
        lines.append(f"| {name} | {counts.get(f'clips_with_{name}', 0)} | {models} |")
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    if report.get("quality"):
        quality = report["quality"]
        lines += ["", "## Quality against the corpus ground truth", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in quality.items() if k != "cut_counts"]
    lines += ["", "## Empty videos, errors and warnings", ""]
    lines += [f"- {line}" for line in problem_lines(report, limit=None)] or ["none"]
    return "\n".join(lines) + "\n"
