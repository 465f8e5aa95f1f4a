"""The ablation's data: a cached curation, held-out real clips, the fixed prompts, ground truth and arm tables.

Held-out clips come from whole videos chosen by a hash of (seed, file name), so no scene of a held-out video is
ever trained on; where the synthetic corpus' ground truth exists, only clean clips (no planted degradation) form
the real set that FVD compares against.
"""

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from omegaconf import OmegaConf

from data_modules.arms import subset_key
from lightning_svd.cache import build_once_resuming
from lightning_svd.clip_table import CAPTION_COLUMNS, ok_rows
from lightning_svd.config import check_required_paths, load_config
from lightning_svd.curation.quality import covering_scene
from lightning_svd.errors import UserError
from lightning_svd.run_context import RunContext
from lightning_svd.synthetic import CorpusSpec

CURATIONS = "curations"  # under cache_dir: one finished curation per folder, named by its key
CLIPS = "clips"  # the clip table, in the curation's folder


def synthetic_truth(video_path: str) -> dict | None:
    """A synthetic-corpus sidecar (recognised by its `generator_version` and `scenes` keys), else None."""
    sidecar = Path(video_path).with_suffix(".json")
    if not sidecar.is_file():
        return None
    data = json.loads(sidecar.read_text())
    return data if isinstance(data, dict) and "generator_version" in data and "scenes" in data else None


class GroundTruth:
    """Which clips show a planted degradation, read once per video from the corpus sidecars."""

    def __init__(self):
        self._truths: dict[str, dict | None] = {}

    def _truth(self, video_path: str) -> dict | None:
        if video_path not in self._truths:
            self._truths[video_path] = synthetic_truth(video_path)
        return self._truths[video_path]

    def degraded(self, row: dict) -> bool | None:
        truth = self._truth(row["video_path"])
        if truth is None:
            return None
        return covering_scene(truth, row["start_frame"], row["end_frame"])["degradation"] is not None

    def degraded_share(self, table: pa.Table) -> float | None:
        """The share of the table's clips with planted degradation; None where any clip lacks ground truth."""
        flags = [self.degraded(row) for row in table.select(["video_path", "start_frame", "end_frame"]).to_pylist()]
        if not flags or any(flag is None for flag in flags):
            return None
        return float(np.mean(flags))


def curation_cache_key(source: str, curation: dict) -> str:
    from lightning_svd.curation.runner import pipeline_hash

    return hashlib.sha256(f"{source}|{pipeline_hash(curation)}".encode()).hexdigest()[:16]


def curation_config(cfg):
    """The curation the ablation runs: `ablation.curation_experiment` with `ablation.curation_overrides`, over the
    ablation's corpus, data and cache."""
    section = cfg.ablation
    curate_cfg = load_config(section.curation_experiment, cfg.profile, list(section.curation_overrides),
                             check_paths=False)
    curate_cfg.corpus, curate_cfg.data, curate_cfg.cache_dir = cfg.corpus, cfg.data, cfg.cache_dir
    curate_cfg.curation.progress = False
    if curate_cfg.curation.split.mode != "none":
        raise UserError(f"curation.split.mode={curate_cfg.curation.split.mode} in ablation.curation_overrides: the "
                        "ablation trains on spans of the source videos; leave it at none")
    return curate_cfg


def cached_curation(cfg, log: logging.Logger, curate: Callable) -> Path:
    """The clip table to ablate: `ablation.clip_table`, or `curate(curation config, run context)` of the source,
    cached under `cache_dir` (the task passes the curate task's `run`; the library does not import tasks).

    The cache folder is keyed by the source (the corpus spec or the folder) and the curation config; an
    interrupted curation resumes shard by shard, a finished one is reused as is.
    """
    if cfg.ablation.clip_table:
        return Path(str(cfg.ablation.clip_table)).expanduser()
    curate_cfg = curation_config(cfg)
    if cfg.profile == "paper":
        check_required_paths(curate_cfg)
    source = str(Path(str(cfg.data.source)).expanduser().resolve()) if cfg.data.source else \
        f"corpus:{CorpusSpec.from_config(cfg.corpus).key()}"
    curation = OmegaConf.to_container(curate_cfg.curation, resolve=True)

    def run_curation(work: Path) -> None:
        log.info(f"curating {source} (cached for later ablations)")
        curate_cfg.run_dir = str(work)
        ctx = RunContext(work, log)
        try:
            curate(curate_cfg, ctx)
        finally:
            ctx.close_tensorboard()

    folder = build_once_resuming(Path(str(cfg.cache_dir)).expanduser() / CURATIONS,
                                 curation_cache_key(source, curation), run_curation)
    log.info(f"clip table: the curation cached in {folder}")
    return folder / CLIPS


@dataclass
class Split:
    train_pool: pa.Table      # ok clips of the videos not held out
    real: pa.Table            # held-out clips FVD compares against
    heldout_videos: list[str]


def heldout_split(table: pa.Table, seed: int, video_fraction: float, clean_only: bool, max_clips: int,
                  min_frames: int, truth: GroundTruth) -> Split:
    """Hold out whole videos (first in the hash order of their file names) and pick their real clips."""
    table = ok_rows(table)
    videos = sorted(set(table["video_path"].to_pylist()))
    count = int(np.floor(video_fraction * len(videos) + 0.5))
    if not 0 < count < len(videos):
        raise UserError(f"ablation.heldout.video_fraction={video_fraction} holds out {count} of {len(videos)} "
                        "videos; choose a fraction that leaves at least one video on each side")
    held = sorted(videos, key=lambda v: subset_key(seed, f"heldout:{Path(v).name}"))[:count]
    is_held = pc.is_in(table["video_path"], value_set=pa.array(held))
    pool, candidates = table.filter(pc.invert(is_held)), table.filter(is_held)
    long_enough = pc.greater_equal(pc.subtract(candidates["end_frame"], candidates["start_frame"]), min_frames)
    candidates = candidates.filter(long_enough)
    if clean_only:
        flags = [truth.degraded(row) for row in candidates.to_pylist()]
        if all(flag is not None for flag in flags):
            candidates = candidates.filter(pa.array([not flag for flag in flags]))
    order = np.argsort([subset_key(seed, c) for c in candidates["clip_id"].to_pylist()], kind="stable")
    real = candidates.take(order[:max_clips])
    if real.num_rows == 0:
        raise UserError(f"no held-out clip of at least {min_frames} frames (clean where ground truth exists); "
                        "raise ablation.heldout.video_fraction or curate more videos")
    return Split(pool, real, held)


CAPTION_ORDER = (*CAPTION_COLUMNS, "caption")


def clip_caption(row: dict) -> str | None:
    return next((row[c] for c in CAPTION_ORDER if row.get(c)), None)


def fixed_prompts(prompts_file: str | None, count: int, real: pa.Table) -> list[dict]:
    """The prompt list every arm samples: a file (one per line), or the distinct captions of the real clips."""
    if prompts_file:
        path = Path(str(prompts_file)).expanduser()
        if not path.is_file():
            raise UserError(f"ablation.prompts.file: no file at {path}; give a text file with one prompt per line")
        texts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        texts = list(dict.fromkeys(c for c in map(clip_caption, real.to_pylist()) if c))
    texts = texts[:count]
    if not texts:
        raise UserError("no prompts: set ablation.prompts.file or curate clips with captions")
    return [{"id": f"p{i:03d}", "text": text} for i, text in enumerate(texts)]


def write_arm_table(table: pa.Table, path: Path) -> Path:
    """Write an arm's clips for the clip DataModule, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(table, partial)
    partial.replace(path)
    return path


def curation_arms(table: pa.Table, seed: int) -> list:
    """The curated-vs-uncurated ablation: the clips the paper's combined filter (LVD-F) keeps, and a random subset
    of the same size drawn from the same table (both remove the same fraction; only the choice differs)."""
    from data_modules.arms import Arm, combined_filter, random_subset

    table = ok_rows(table)
    curated = combined_filter(table, seed=seed).table
    if curated.num_rows == 0:
        raise UserError("the combined filter keeps no clip of the subset; curate more videos")
    removed = round(1.0 - curated.num_rows / table.num_rows, 6)
    uncurated = random_subset(table, seed, size=curated.num_rows)
    return [Arm("uncurated", "curation", removed, None, uncurated), Arm("curated", "curation", removed, None, curated)]
