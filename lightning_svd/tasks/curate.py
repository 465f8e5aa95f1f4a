"""Task `curate`: a folder of videos (default: the synthetic corpus) -> `<run_dir>/clips/` + the curation report.

Resume: pass the folder of an interrupted run as `run_dir=...`; shards with a done marker are skipped.
"""

import json
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from ..clip_table import COLUMN_NOTES, done_markers, read_clip_table
from ..curation.engines import LocalEngine
from ..curation.pipeline import VideoCurator
from ..curation.quality import evaluate_against_truth
from ..curation.report import headline, histogram_image, problem_lines, render_markdown, score_values, summarize
from ..curation.runner import curate_videos, discover_videos
from ..curation.table import ShardMismatchError
from ..errors import UserError


def source_videos(cfg) -> tuple[list[str], str, Path]:
    """The videos to curate, a description of where they come from, and the folder they are found under (clip ids
    hash paths relative to it)."""
    extensions = list(cfg.curation.extensions)
    if cfg.data.source:
        source = Path(str(cfg.data.source)).expanduser()
        if not source.is_dir():
            raise UserError(f"data.source: no folder at {source}; set data.source=DIR (a folder of videos)")
        videos = discover_videos(source, extensions)
        if not videos:
            raise UserError(f"data.source: no videos ({', '.join(extensions)}) under {source}")
        where, root = str(source), source.resolve()
    else:
        from ..synthetic import CorpusSpec, ensure_corpus

        root = ensure_corpus(CorpusSpec.from_config(cfg.corpus), cfg.cache_dir)
        videos, where = discover_videos(root / "videos", extensions), f"synthetic corpus {root}"
        root = (root / "videos").resolve()
    if cfg.curation.max_videos:
        videos = videos[: int(cfg.curation.max_videos)]
    return videos, where, root


def build_engine(curation: dict):
    if curation["engine"] == "local":
        return LocalEngine(curation, int(curation["workers"]), int(curation["threads_per_worker"]),
                           int(curation["max_tasks_per_worker"]))
    if curation["engine"] == "ray":
        from ..curation.ray_engine import RayEngine

        return RayEngine(curation, int(curation["workers"]), int(curation["threads_per_worker"]),
                         curation["ray"].get("address"), curation["ray"].get("num_cpus"))
    raise UserError(f"curation.engine must be local or ray, got '{curation['engine']}'")


def check(cfg) -> None:
    """The engine, the pipeline's settings (the curator checks them when built, before loading any model) and a given
    source fail here, before the run dir exists; the synthetic corpus is made by `run`."""
    curation = OmegaConf.to_container(cfg.curation, resolve=True)
    build_engine(curation)
    try:
        VideoCurator(curation)
    except (ValueError, FileNotFoundError) as err:
        raise UserError(f"curation config: {err}") from None
    if cfg.data.source:
        source_videos(cfg)


def ground_truth(videos: list[str]) -> dict[str, dict]:
    """Synthetic-corpus sidecars (recognised by their `generator_version` and `cuts` keys) of the curated videos. A
    `.json` beside a video that does not read is no ground truth (the sidecar captioner warns about it)."""
    truths = {}
    for video in videos:
        sidecar = Path(video).with_suffix(".json")
        if not sidecar.is_file():
            continue
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "generator_version" in data and "cuts" in data:
            truths[video] = data
    return truths


def run(cfg, ctx) -> dict:
    curation = OmegaConf.to_container(cfg.curation, resolve=True)
    if curation["split"]["mode"] != "none" and not curation["split"]["dir"]:
        curation["split"]["dir"] = str(ctx.run_dir / "clip_files")
    videos, where, root = source_videos(cfg)
    curation["source_root"] = str(root)
    ctx.log.info(f"curating {len(videos)} videos from {where}")
    clip = curation["clip"]
    if clip["enabled"] and not clip["weights"]:
        ctx.log.info(f"CLIP score: open_clip {clip['model']} on random weights (curation.clip.weights not set); its "
                     "scores rank nothing, and the clip table and results say so")
    flow = curation["flow"]
    if flow["backend"] == "raft" and not flow["raft"]["weights"]:
        ctx.log.info(f"motion score: RAFT {flow['raft']['model']} on random weights (curation.flow.raft.weights not "
                     "set); its flow_score ranks nothing, and the clip table and results say so")
    folder = ctx.run_dir / "clips"
    try:
        summary = curate_videos(videos, curation, folder, build_engine(curation), progress=curation["progress"])
    except ShardMismatchError as err:
        raise UserError(str(err)) from None
    except (ValueError, FileNotFoundError) as err:
        raise UserError(f"curation config: {err}") from None
    table, markers = read_clip_table(folder), done_markers(folder)
    report = summarize(table, markers)
    report["table"] = str(folder)
    report["source"] = where
    report["this_run"] = {
        "videos_processed": summary.videos_processed, "shards_skipped": summary.shards_skipped,
        "wall_seconds": round(summary.wall_seconds, 3), "clips_written": summary.clips_written,
        "clips_per_second": round(summary.clips_written / max(summary.wall_seconds, 1e-9), 3),
    }
    report["notes"] = [f"{name}: {', '.join(models)}" for name, models in report["models"].items()
                       if any("random" in m for m in models)]
    if report["notes"]:
        report["notes"].insert(0, "scores from randomly initialised networks below rank nothing; give weights")
    report["columns"] = COLUMN_NOTES
    truths = ground_truth(videos)
    if truths:
        rows = table.to_pylist()
        cuts = {video: [c["frame"] for c in cut_list] for m in markers for video, cut_list in m["cuts"].items()}
        report["quality"] = evaluate_against_truth(rows, cuts, truths)
    values = score_values(table)
    histogram_image(values, bins=int(curation["report"]["histogram_bins"])).save(ctx.run_dir / "score_histograms.png")
    (ctx.run_dir / "curation_report.json").write_text(json.dumps(report, indent=1, default=str))
    markdown = render_markdown(report)
    (ctx.run_dir / "curation_report.md").write_text(markdown)
    writer = ctx.tensorboard()
    for name, data in values.items():
        if len(data):
            writer.add_histogram(f"curation/{name}", data, 0)
    for name, value in report["counts"].items():
        if isinstance(value, int):
            writer.add_scalar(f"curation/count/{name}", value, 0)
    for name, value in (report.get("quality") or {}).items():
        if isinstance(value, float) and np.isfinite(value):
            writer.add_scalar(f"curation/quality/{name}", value, 0)
    writer.add_text("curation/report", markdown)
    results = {"experiment": cfg.experiment, "profile": cfg.profile,
               **{k: v for k, v in report.items() if k != "videos"}}  # every video: curation_report.json
    ctx.write_results(results, markdown)
    ctx.log.info(f"{headline(report)} -> {folder}")
    for line in problem_lines(report):
        ctx.log.info(f"  {line}")
    seconds = report["stage_seconds"]
    slowest = sorted(seconds, key=seconds.get, reverse=True)[:3]
    ctx.log.info(f"{summary.wall_seconds:.1f} s wall for {summary.videos_processed} videos; most time in "
                 + ", ".join(f"{stage} {seconds[stage] / (sum(seconds.values()) or 1):.0%}" for stage in slowest)
                 + f"; report: {ctx.run_dir / 'curation_report.md'}")
    return results
