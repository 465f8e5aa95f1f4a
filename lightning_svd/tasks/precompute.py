"""Task `precompute`: encode a clip table once into shards that `train.data.shards=PATH` trains from.

Per-step decoding, resizing and frozen-encoder passes are the input cost that starves an accelerator at scale;
here they run once. The stage named by `precompute.experiment` (with `precompute.overrides`, at this run's profile and
seed) is built exactly as its training run builds it, init_from included, so the shards hold what its own frozen
encoders give; the training run checks that by the encoders' weight digests. Each clip goes to one
(height, width, frames) bucket: among those its length fits, the nearest in aspect ratio, then the largest. Every
window is cut as the online clip DataModule cuts it (seeded per clip id and window). Resumable: a rerun with the same
run_dir keeps the parts already written and refuses a changed plan. Format and layout: data_modules/shards.py.
"""

import hashlib
import json
import math
import time
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow as pa
import torch
from omegaconf import OmegaConf

from data_modules.clips import CaptionSampler, ClipDataModule, ClipDataset
from data_modules.shards import FORMAT, MANIFEST, bucket_name, write_part
from lightning_svd.clip_table import CAPTION_COLUMNS
from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.stages import STAGES, load_init_weights
from lightning_svd.training import build_stage, clip_table, encoder_digests, motion_buckets

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def stage_config(cfg):
    """The training run's config the shards are for: precompute.experiment at this profile and seed."""
    try:
        return load_config(cfg.precompute.experiment, cfg.profile, [f"seed={cfg.seed}", *cfg.precompute.overrides])
    except UserError as error:
        raise UserError(f"precompute.experiment={cfg.precompute.experiment}: {error} (its keys go in "
                        "precompute.overrides=[KEY=VALUE,...])") from None


def bucket_shapes(cfg, stage_cfg) -> list[tuple[int, int, int]]:
    """(height, width, frames) of every bucket: precompute.buckets, or the stage's own size."""
    train = stage_cfg.train
    if cfg.precompute.buckets is None:
        return [(int(train.height), int(train.width), int(train.num_frames))]
    shapes = [tuple(int(v) for v in bucket) for bucket in cfg.precompute.buckets]
    if not shapes or any(len(s) != 3 or min(s) < 1 for s in shapes) or len(set(shapes)) != len(shapes):
        raise UserError(f"precompute.buckets must list distinct [height, width, frames] triples of positive integers, "
                        f"got {OmegaConf.to_container(cfg.precompute.buckets)}")
    return shapes


def check(cfg) -> None:
    stage_cfg = stage_config(cfg)
    name = stage_cfg.train.name
    if name not in STAGES or not STAGES[name].trains_from_precomputed:
        trainable = [n for n, stage in STAGES.items() if stage.trains_from_precomputed]
        raise UserError(f"precompute.experiment={cfg.precompute.experiment} trains the {name} stage, which does not "
                        f"train from shards; stages that do: {', '.join(trainable)}")
    bucket_shapes(cfg, stage_cfg)
    if str(cfg.precompute.dtype) not in DTYPES:
        raise UserError(f"precompute.dtype={cfg.precompute.dtype} is not one of {', '.join(DTYPES)}")
    for key in ("windows_per_clip", "samples_per_part", "encode_batch_size"):
        if int(cfg.precompute[key]) < 1:
            raise UserError(f"precompute.{key} must be at least 1, got {cfg.precompute[key]}")


def assign_buckets(clips: pa.Table, shapes: list[tuple[int, int, int]], min_stride: int) -> dict[tuple, list[int]]:
    """Row indices per bucket shape: of the buckets a clip's length fits at the smallest stride, the nearest in
    aspect ratio (where the table gives width and height), then the one with most pixels x frames."""
    lengths = (np.asarray(clips["end_frame"]) - np.asarray(clips["start_frame"])).tolist()
    sizes = zip(clips["width"].to_pylist(), clips["height"].to_pylist()) if "width" in clips.column_names \
        else [(None, None)] * clips.num_rows
    chosen: dict[tuple, list[int]] = {shape: [] for shape in shapes}
    for row, (length, (width, height)) in enumerate(zip(lengths, sizes)):
        fitting = [s for s in shapes if (s[2] - 1) * min_stride + 1 <= length]
        if not fitting:
            continue
        aspect = width / height if width and height else None

        def distance(shape, aspect=aspect):
            off = abs(math.log(aspect * shape[0] / shape[1])) if aspect else 0.0
            return off, -shape[0] * shape[1] * shape[2]

        chosen[min(fitting, key=distance)].append(row)
    return {shape: rows for shape, rows in chosen.items() if rows}


def window_seed(seed: int, clip_id: str, window: int) -> int:
    """The sample seed of a clip's window: stable across table order and reruns."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{clip_id}:{window}".encode()).digest()[:8], "little") >> 1


class Encoder:
    """The stage's frozen encoders on one device, turning a list of clip windows into shard samples."""

    def __init__(self, stage, captions: list[str], dtype: torch.dtype, device: torch.device):
        self.encoders = {key: module.to(device).eval() for key, module in stage.precomputable().items()}
        self.first_frame = stage.generates_from == "image"
        self.captions, self.dtype, self.device = captions, dtype, device

    @torch.no_grad()
    def __call__(self, dataset: ClipDataset, keys: list[tuple[int, int]]) -> list[dict]:
        items = [dataset[key] for key in keys]
        rows = [dataset.row(index) for index, _ in keys]
        video = torch.stack([item["video"] for item in items]).to(self.device)
        count, frames = video.shape[:2]
        with torch.autocast(device_type=self.device.type, enabled=False):
            mean, std = self.encoders["latent"].latent_moments(video.flatten(0, 1).float())
            outputs = {"latent_mean": mean.unflatten(0, (count, frames)),
                       "latent_std": std.unflatten(0, (count, frames))}
            if "txt_embedding" in self.encoders:
                texts = {column: [row.get(column) or "" for row in rows] for column in self.captions}
                outputs["txt_embedding"] = {column: self.encoders["txt_embedding"](texts[column])
                                            for column in self.captions}
            if "image_embedding" in self.encoders:
                outputs["image_embedding"] = self.encoders["image_embedding"](video[:, 0])
        if self.first_frame:
            outputs["first_frame"] = video[:, 0]
        samples = []
        for n, ((_, seed), item, row) in enumerate(zip(keys, items, rows)):
            flow = row.get("flow_score")
            sample = {"clip_id": item["clip_id"], "sample_seed": seed, "fps": float(row["fps"]),
                      "fps_id": float(item["fps_id"]), "flow_score": float("nan") if flow is None else float(flow)}
            for key, value in outputs.items():
                if isinstance(value, dict):
                    sample[key] = {column: v[n].to("cpu", self.dtype).clone() for column, v in value.items()}
                else:
                    sample[key] = value[n].to("cpu", self.dtype).clone()
            if "txt_embedding" in outputs:
                sample["captions"] = {column: row.get(column) or "" for column in self.captions}
            samples.append(sample)
        return samples


def build_plan(cfg, stage_cfg, table: Path, clips: pa.Table, digests: dict) -> dict:
    """What the shards will hold, before any is written: settings, encoders and every bucket's samples."""
    data = stage_cfg.train.data
    strides = sorted(int(s) for s in data.strides)
    buckets = []
    for (height, width, frames), rows in assign_buckets(clips, bucket_shapes(cfg, stage_cfg), strides[0]).items():
        ids = clips["clip_id"].take(pa.array(rows)).to_pylist()
        samples = [[row, window_seed(int(cfg.seed), clip_id, window)]
                   for row, clip_id in zip(rows, ids) for window in range(int(cfg.precompute.windows_per_clip))]
        buckets.append({"name": bucket_name(height, width, frames), "height": height, "width": width,
                        "num_frames": frames, "clips": len(rows), "samples": samples})
    if not buckets:
        raise UserError(f"no clip of {table} is long enough for any bucket {bucket_shapes(cfg, stage_cfg)} at stride "
                        f"{strides[0]}; use fewer frames or a table with longer clips")
    return {"format": FORMAT, "clip_table": str(table.resolve()), "experiment": cfg.precompute.experiment,
            "overrides": list(cfg.precompute.overrides), "seed": int(cfg.seed), "stage": stage_cfg.train.name,
            "strides": strides, "camera_motion": data.camera_motion,
            "camera_directions": OmegaConf.to_container(data)["camera_directions"],
            "windows_per_clip": int(cfg.precompute.windows_per_clip),
            "samples_per_part": int(cfg.precompute.samples_per_part), "dtype": str(cfg.precompute.dtype),
            "encoders": digests, "buckets": buckets}


def fixed_plan(root: Path, plan: dict) -> None:
    """Record the plan (its sample lists as digests), or check that an interrupted run's is this one: its parts are
    then reused."""
    plan = {**plan, "buckets": [{**b, "samples": hashlib.sha256(json.dumps(b["samples"]).encode()).hexdigest()}
                                for b in plan["buckets"]]}
    path = root / "plan.json"
    if path.is_file():
        if json.loads(path.read_text()) != plan:
            raise UserError(f"{root} holds shards of another plan (table, settings or encoders changed); precompute "
                            "into a new run_dir")
        return
    root.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(".plan.json.partial")
    partial.write_text(json.dumps(plan))
    partial.replace(path)


def run(cfg, ctx) -> dict:
    started = time.perf_counter()
    stage_cfg = stage_config(cfg)
    table = clip_table(stage_cfg, ctx)
    motion = motion_buckets(stage_cfg, table, ctx.log)
    L.seed_everything(int(stage_cfg.seed), workers=True, verbose=False)  # the training run's random towers
    stage = build_stage(stage_cfg, motion)
    if stage_cfg.init_from:
        load_init_weights(stage, stage_cfg.init_from)
    train, data = stage_cfg.train, stage_cfg.train.data
    probabilities = OmegaConf.to_container(data.caption_probabilities)
    online = ClipDataModule(table, int(train.num_frames), int(train.height), int(train.width), motion,
                            camera_motion=data.camera_motion, camera_directions=data.camera_directions,
                            caption_probabilities=probabilities)
    clips = online.clips()  # the clips the online DataModule trains on
    captions = [c for c in CAPTION_COLUMNS if c in clips.column_names]
    digests = encoder_digests(stage)
    if "txt_embedding" in digests and not captions:
        raise UserError(f"{table} has no caption column ({', '.join(CAPTION_COLUMNS)}) for the text stage's embeddings")
    plan = build_plan(cfg, stage_cfg, table, clips, digests)
    root = Path(ctx.run_dir) / "shards"
    fixed_plan(root, plan)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    encode = Encoder(stage, captions, DTYPES[plan["dtype"]], device)
    per_part, per_batch = plan["samples_per_part"], int(cfg.precompute.encode_batch_size)
    written = reused = 0
    manifest_buckets = []
    for bucket in plan["buckets"]:
        rows = sorted({row for row, _ in bucket["samples"]})
        position = {row: n for n, row in enumerate(rows)}
        dataset = ClipDataset(clips.take(pa.array(rows)), bucket["num_frames"], bucket["height"], bucket["width"],
                              plan["strides"], CaptionSampler(probabilities), motion)
        parts, sizes = [], []
        for start in range(0, len(bucket["samples"]), per_part):
            keys = [(position[row], seed) for row, seed in bucket["samples"][start : start + per_part]]
            folder = root / bucket["name"] / f"part-{start // per_part:05d}"
            parts.append(str(folder.relative_to(root)))
            sizes.append(len(keys))
            if folder.is_dir():
                reused += 1
                continue
            samples = [s for b in range(0, len(keys), per_batch) for s in encode(dataset, keys[b : b + per_batch])]
            write_part(folder, samples)
            written += 1
            ctx.log.info(f"{folder.relative_to(root)}: {len(samples)} samples")
        manifest_buckets.append({**{k: v for k, v in bucket.items() if k != "samples"},
                                 "samples": len(bucket["samples"]), "parts": parts, "part_sizes": sizes})
    manifest = {**{k: v for k, v in plan.items() if k != "buckets"}, "caption_columns": captions,
                "buckets": manifest_buckets, "skipped_clips": clips.num_rows - sum(b["clips"] for b in plan["buckets"])}
    partial = root / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2))
    partial.replace(root / MANIFEST)
    results = {"experiment": cfg.experiment, "profile": cfg.profile, "shards": str(root),
               "for_experiment": manifest["experiment"], "stage": manifest["stage"], "clip_table": str(table),
               "buckets": {b["name"]: b["samples"] for b in manifest_buckets},
               "skipped_clips": manifest["skipped_clips"],
               "parts_written": written, "parts_reused": reused, "device": str(device),
               "seconds": round(time.perf_counter() - started, 2)}
    rows = "\n".join(f"| {k} | {v} |" for k, v in results.items())
    usage = f"python run.py experiment={manifest['experiment']} seed={manifest['seed']} train.data.shards={root}"
    ctx.write_results(results, f"# Precompute: {manifest['experiment']} ({manifest['stage']})\n\n| key | value |\n"
                               f"|---|---|\n{rows}\n\nTrain from them: `{usage}`\n")
    ctx.log.info(f"shards at {root}: {results['buckets']} samples ({written} parts written, {reused} reused)")
    return results
