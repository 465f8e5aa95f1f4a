"""The curation report: counts per stage, errors, time per stage, score summaries and histograms, quality.

Everything is read back from the finished table and its done markers, so a resumed run reports on the whole
table, not only on the shards it processed itself.
"""

from collections import defaultdict

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw, ImageFont

from ..clip_table import CAPTION_COLUMNS, SCORE_COLUMNS


def score_values(table: pa.Table) -> dict[str, np.ndarray]:
    ok = [s == "ok" for s in table.column("status").to_pylist()]
    values = {}
    for name in SCORE_COLUMNS:
        column = table.column(name).to_pylist()
        values[name] = np.array([v for v, good in zip(column, ok) if good and v is not None], dtype=np.float64)
    return values


def models_used(table: pa.Table) -> dict[str, list[str]]:
    """What produced each score and caption column (`<column>_model`), distinct values."""
    return {name: sorted({m for m in table.column(f"{name}_model").to_pylist() if m})
            for name in (*SCORE_COLUMNS, *CAPTION_COLUMNS)}


def summarize(table: pa.Table, markers: list[dict]) -> dict:
    status = table.column("status").to_pylist()
    seconds: dict[str, float] = defaultdict(float)
    cut_levels: dict[str, int] = defaultdict(int)
    errors: dict[str, str] = {}
    for marker in markers:
        for stage, value in marker["stage_seconds"].items():
            seconds[stage] += value
        errors.update(marker["errors"])
        for cuts in marker["cuts"].values():
            for cut in cuts:
                cut_levels[cut["level"]] += 1
    videos = sum(len(m["videos"]) for m in markers)
    counts = {
        "videos": videos,
        "videos_ok": videos - len(errors),
        "videos_error": len(errors),
        "cuts": sum(cut_levels.values()),
        "cuts_by_level": dict(cut_levels),
        "clips": sum(s == "ok" for s in status),
        "shards": len(markers),
    }
    for name in CAPTION_COLUMNS:
        counts[f"clips_with_{name}"] = sum(s == "ok" and c is not None
                                           for s, c in zip(status, table.column(name).to_pylist()))
    scores = {}
    for name, values in score_values(table).items():
        counts[f"clips_with_{name}"] = int(len(values))
        if len(values):
            scores[name] = {"min": float(values.min()), "median": float(np.median(values)),
                            "max": float(values.max()), "mean": float(values.mean())}
    return {"counts": counts, "stage_seconds": {k: round(v, 3) for k, v in seconds.items()},
            "errors": errors, "scores": scores, "models": models_used(table)}


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
    lines = ["# Curation report", "", f"Clip table: `{report['table']}` ({counts['clips']} clips from "
             f"{counts['videos']} videos, {counts['shards']} shards)", "", "## Counts", "", "| stage | count |",
             "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.items()]
    lines += ["", "## Time per stage (seconds, summed over workers)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in seconds.items()]
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
    lines += ["", "## Errors", ""]
    lines += [f"- `{video}`: {message}" for video, message in report["errors"].items()] or ["none"]
    return "\n".join(lines) + "\n"
