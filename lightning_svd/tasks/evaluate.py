"""Task `evaluate`: the paper's Table 2 (zero-shot UCF-101 FVD) and Table 3 (multi-view orbits).

`evaluation.protocol` picks one:
- `ucf101` (experiment eval_ucf101): a text stage generates the protocol's samples (per-class counts, raw class
  name, 16 frames, guidance 7, 320x576, resize 240x432, crop 240x320) and FVD compares their features with the
  real clips'; which clips and frames were used is written to `real_clips.json`.
- `multiview` (experiment eval_multiview): an image-to-video stage turns view 0 of each ground-truth orbit into
  21 frames, scored with PSNR, LPIPS and CLIP-S against the orbit's views.

Results follow `lightning_svd.reporting.runs`, so `experiment=report` renders them beside the paper's rows.
The tiny profile runs both on synthetic sets made here (cached under `cache_dir`), with a random-init stage
when no checkpoint is given; every such result is labelled not comparable and says why.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from callbacks import extractor_from_section
from lightning_svd.errors import UserError
from lightning_svd.evaluation.fvd import FrechetVideoDistance, RealStatisticsCache
from lightning_svd.evaluation.multiview import (
    LPIPS,
    NUM_VIEWS,
    CLIPImageSimilarity,
    MultiViewMetrics,
    read_orbit,
)
from lightning_svd.evaluation.ucf101 import (
    UCF101Index,
    UCF101Protocol,
    UCF101RealClips,
    make_plan,
    preprocess_generated,
)
from lightning_svd.stages import STAGES, load_stage, resolve_checkpoint
from lightning_svd.synthetic.scenes import SceneRenderer, random_scene
from lightning_svd.video import write_video

SYNTHETIC_UCF_CLASSES = {"PanRight": ("right", 2.0), "PanLeft": ("left", 2.0), "PanDown": ("down", 2.0),
                         "PanUp": ("up", 2.0), "StandStill": ("right", 0.0)}


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _build_once(root: Path, build) -> Path:
    """Make a cached folder in a temporary sibling and rename it into place (a crash leaves no half set)."""
    if (root / "DONE").is_file():
        return root
    partial = root.with_name(f"{root.name}.partial-{time.time_ns()}")
    partial.mkdir(parents=True)
    try:
        build(partial)
        (partial / "DONE").write_text("")
        partial.rename(root)
    except OSError:
        if not (root / "DONE").is_file():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root


def _spec_folder(cache_dir, kind: str, spec: dict) -> Path:
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir).expanduser() / kind / key


# --- the model ------------------------------------------------------------------------------------------------


def evaluated_stage(cfg, height: int, width: int, expected: tuple[str, ...]):
    """The checkpoint's stage, or (tiny profile only) a random-init stage from `train` at the protocol's size."""
    if cfg.model.checkpoint:
        checkpoint = resolve_checkpoint(cfg.model.checkpoint)
        stage = load_stage(checkpoint, _device())
        label, reasons = str(checkpoint), []
    elif cfg.profile == "tiny":
        stage_cfg = OmegaConf.to_container(cfg.train, resolve=True)
        stage_cfg.update(height=height, width=width)
        stage = STAGES[stage_cfg["name"]](stage=stage_cfg, seed=int(cfg.seed)).to(_device())
        label, reasons = f"random-init {stage_cfg['name']} (tiny)", ["random-init model"]
    else:
        raise UserError("set model.checkpoint=PATH (a stage .ckpt or a training run dir) to evaluate")
    name = stage.hparams.stage["name"]
    if name not in expected:
        raise UserError(f"{cfg.experiment} evaluates a {' or '.join(expected)} stage; {label} is a {name} stage")
    size = (int(stage.hparams.stage["height"]), int(stage.hparams.stage["width"]))
    if size != (height, width):
        raise UserError(f"{label} generates {size[0]}x{size[1]}, the protocol needs {height}x{width}; "
                        "give a checkpoint trained at that size or change the protocol size (not comparable)")
    return stage.eval(), str(cfg.evaluation.label or label), reasons


# --- UCF-101 --------------------------------------------------------------------------------------------------


def synthetic_ucf101(cache_dir, spec: dict) -> Path:
    """A UCF-101-shaped tree (class folders, classInd.txt, trainlist01/testlist01) of synthetic-corpus scenes:
    one class per camera motion, the first three quarters of each class in the train list."""
    classes = list(SYNTHETIC_UCF_CLASSES)[: int(spec["classes"])]

    def build(root: Path) -> None:
        rng = np.random.default_rng(int(spec["seed"]))
        splits = root / "ucfTrainTestlist"
        splits.mkdir()
        train, test = [], []
        height, width = spec["size"]
        frames = int(round(float(spec["seconds"]) * 25))
        for number, name in enumerate(classes, start=1):
            (root / "UCF-101" / name).mkdir(parents=True)
            direction, speed = SYNTHETIC_UCF_CLASSES[name]
            for clip in range(int(spec["videos_per_class"])):
                scene = random_scene(rng, static=speed == 0, text=False, degraded=False)
                scene.pan_direction, scene.speed = direction, speed
                renderer = SceneRenderer(scene, width, height)
                relative = f"{name}/v_{name}_g01_c{clip + 1:02d}.mp4"
                write_video(root / "UCF-101" / relative, (renderer.render(t) for t in range(frames)), 25)
                is_train = clip < max(1, int(spec["videos_per_class"]) * 3 // 4)
                (train.append(f"{relative} {number}") if is_train else test.append(relative))
        (splits / "classInd.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(classes, start=1)))
        (splits / "trainlist01.txt").write_text("\n".join(train) + "\n")
        (splits / "testlist01.txt").write_text("\n".join(test) + "\n")

    return _build_once(_spec_folder(cache_dir, "synthetic_ucf101", spec), build)


def _real_clip_batches(index: UCF101Index, plan, batch_size: int, selections: list[dict]):
    dataset = UCF101RealClips(index, plan.real_videos, plan.protocol)
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        selections.extend({"path": plan.real_videos[item["item"]].path, "frame_indices": item["frame_indices"].tolist(),
                           "timestamps": item["timestamps"].tolist(), "native_size": item["native_size"].tolist()}
                          for item in items)
        yield torch.stack([item["video"] for item in items])


def evaluate_ucf101(cfg, ctx) -> dict:
    reasons = []
    if cfg.data.ucf101_root:
        root = Path(cfg.data.ucf101_root)
    elif cfg.profile == "tiny":
        spec = OmegaConf.to_container(cfg.evaluation.synthetic_ucf101, resolve=True)
        root = synthetic_ucf101(cfg.cache_dir, spec)
        reasons.append(f"synthetic UCF-101 stand-in ({spec['classes']} classes of synthetic-corpus scenes)")
    else:
        raise UserError("set data.ucf101_root=DIR (the local UCF-101 folder with its split files)")
    index = UCF101Index.from_root(root, cfg.data.ucf101_splits, int(cfg.data.ucf101_fold))
    missing = index.missing_files()
    if missing:
        raise UserError(f"{len(missing)} videos of the split lists are missing under {index.video_root} "
                        f"(e.g. {missing[0]})")
    protocol = UCF101Protocol(**OmegaConf.to_container(cfg.ucf101, resolve=True), seed=int(cfg.seed))
    plan = make_plan(index, protocol)
    stage, label, model_reasons = evaluated_stage(cfg, *protocol.generate_size, expected=("text_to_video",))
    guider = stage.diffusion.guider
    if not hasattr(guider, "scale") or hasattr(guider, "max_scale"):
        raise UserError(f"the UCF-101 protocol needs one classifier-free guidance scale; {label} samples with "
                        f"{type(guider).__name__}")
    guider.scale = protocol.guidance_scale
    extractor = extractor_from_section(cfg.fvd.extractor).to(_device())
    metric = FrechetVideoDistance(extractor).to(_device())
    batch_size = int(cfg.evaluation.batch_size)
    selections: list[dict] = []
    fvd_protocol = plan.fvd_protocol(index, extractor.identity())
    cache = RealStatisticsCache(cfg.cache_dir)
    clips_file = cache.path(fvd_protocol).with_suffix(".clips.json")
    cached = cache.get_or_compute(fvd_protocol, metric, lambda: _real_clip_batches(index, plan, batch_size,
                                                                                   selections))
    if cached and clips_file.is_file():
        selections = json.loads(clips_file.read_text())
    else:
        clips_file.write_text(json.dumps(selections))
    started = time.perf_counter()
    for start in range(0, len(plan.samples), batch_size):
        samples = plan.samples[start : start + batch_size]
        videos = stage.generate(prompts=[s.prompt for s in samples], seed=samples[0].seed,
                                num_frames=protocol.num_frames, steps=cfg.evaluation.steps, fps=protocol.fps)
        metric.update(preprocess_generated(videos.permute(0, 1, 4, 2, 3), protocol), real=False)
    seconds = time.perf_counter() - started
    fvd = metric.result()
    all_reasons = [*reasons, *model_reasons, *plan.reasons, *([fvd["reason"]] if fvd["reason"] else [])]
    (ctx.run_dir / "real_clips.json").write_text(json.dumps({"rule": protocol.real_selection_rule(),
                                                             "clips": selections}, indent=1))
    (ctx.run_dir / "samples.json").write_text(json.dumps(
        {"seed_rule": f"batches of {batch_size} in sample order; a batch uses the seed of its first sample",
         "samples": [vars(s) for s in plan.samples]}, indent=1))
    return {"evaluation": "ucf101_fvd", "model": label, "fvd": fvd["fvd"], "num_samples": len(plan.samples),
            "num_real": fvd["num_real"], "comparable": not all_reasons, "reason": "; ".join(all_reasons) or None,
            "feature_extractor": fvd["feature_extractor"], "covariance": fvd["covariance"],
            "real_statistics_cached": cached, "plan": plan.summary(), "dataset_root": str(root),
            "generated_preprocessing": protocol.generated_preprocessing(), "generation_seconds": round(seconds, 2),
            "real_clips": "real_clips.json", "samples": "samples.json"}


# --- multi-view -----------------------------------------------------------------------------------------------


def _box_view(size: int, extent: np.ndarray, colors: np.ndarray, azimuth_deg: float,
              elevation_deg: float) -> np.ndarray:
    """RGBA (size, size, 4) uint8: an orthographic, Lambert-shaded box with one colour per face, seen from an
    azimuth around the vertical axis; transparent where no face is hit."""
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    forward = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
    right = np.array([np.cos(az), 0.0, -np.sin(az)])
    up = np.cross(forward, right)
    v, u = np.mgrid[1:-1:size * 1j, -1:1:size * 1j]
    origins = (u[..., None] * right + v[..., None] * up) * 1.1 + 3.0 * forward
    direction = -forward
    with np.errstate(divide="ignore"):
        inverse = 1.0 / np.where(direction == 0, 1e-12, direction)
    t0, t1 = (-extent - origins) * inverse, (extent - origins) * inverse
    near, far = np.minimum(t0, t1).max(axis=-1), np.maximum(t0, t1).min(axis=-1)
    hit = (near <= far) & (far > 0)
    axis = np.minimum(t0, t1).argmax(axis=-1)
    points = origins + near[..., None] * direction
    sign = np.sign(np.take_along_axis(points, axis[..., None], axis=-1)[..., 0])
    face = axis * 2 + (sign > 0)
    normal = np.zeros((*face.shape, 3))
    np.put_along_axis(normal, axis[..., None], sign[..., None], axis=-1)
    light = np.array([0.4, 0.8, 0.45]) / np.linalg.norm([0.4, 0.8, 0.45])
    shade = 0.35 + 0.65 * np.clip(normal @ light, 0.0, 1.0)
    rgb = colors[face] * shade[..., None]
    rgba = np.concatenate([rgb, np.where(hit, 255.0, 0.0)[..., None]], axis=-1)
    rgba[~hit, :3] = 0
    return np.round(rgba).astype(np.uint8)


def synthetic_orbits(cache_dir, spec: dict) -> Path:
    """Ground-truth orbits of coloured boxes: `num_objects` folders of 21 RGBA PNGs at azimuths 360 k / 21."""

    def build(root: Path) -> None:
        rng = np.random.default_rng(int(spec["seed"]))
        for number in range(int(spec["num_objects"])):
            extent = rng.uniform(0.3, 0.7, size=3)
            colors = rng.uniform(40, 255, size=(6, 3))
            folder = root / f"object_{number:03d}"
            folder.mkdir()
            for view in range(NUM_VIEWS):
                image = _box_view(int(spec["size"]), extent, colors, 360.0 * view / NUM_VIEWS,
                                  float(spec["elevation_deg"]))
                Image.fromarray(image, "RGBA").save(folder / f"view_{view:02d}.png")

    return _build_once(_spec_folder(cache_dir, "synthetic_orbits", spec), build)


def _resized(views: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(views.shape[-2:]) == size:
        return views
    resized = F.interpolate(views.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def evaluate_multiview(cfg, ctx) -> dict:
    reasons = []
    if cfg.data.multiview_root:
        root = Path(cfg.data.multiview_root).expanduser()
    elif cfg.profile == "tiny":
        spec = OmegaConf.to_container(cfg.evaluation.synthetic_orbits, resolve=True)
        root = synthetic_orbits(cfg.cache_dir, spec)
        reasons.append(f"synthetic orbits ({spec['num_objects']} rendered boxes), not GSO")
    else:
        raise UserError("set data.multiview_root=DIR (one folder of 21 view images per object)")
    objects = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not objects:
        raise UserError(f"no orbit folders under {root}; give data.multiview_root=DIR with one folder per object")
    size = tuple(int(v) for v in cfg.multiview.size)
    stage, label, model_reasons = evaluated_stage(cfg, *size, expected=("image_to_video",))
    mv = cfg.multiview
    lpips = None
    if mv.lpips.backbone_weights and mv.lpips.head_weights:
        lpips = LPIPS(mv.lpips.net, mv.lpips.backbone_weights, mv.lpips.head_weights).to(_device())
    clip = CLIPImageSimilarity(mv.clip.model if mv.clip.model != "tiny" else _tiny_clip(), mv.clip.weights)
    metric = MultiViewMetrics(lpips, clip.to(_device())).to(_device())
    if len(objects) != 50:
        reasons.append(f"{len(objects)} objects (the paper: 50 GSO objects)")
    for number, folder in enumerate(objects):
        truth = _resized(read_orbit(folder, background=int(mv.background)), size)
        first = truth[:1].float() / 127.5 - 1.0
        video = stage.generate(images=first.to(stage.device), seed=int(cfg.seed) + number, num_frames=NUM_VIEWS,
                               steps=cfg.evaluation.steps, fps=float(mv.fps),
                               motion_bucket_id=int(mv.motion_bucket_id))
        metric.update(video.permute(0, 1, 4, 2, 3).to(_device()), truth[None].to(_device()))
    scores, labels, per_object = metric.compute(), metric.labels(), metric.per_object()
    all_reasons = [*reasons, *model_reasons, *([labels["reason"]] if labels["reason"] else [])]
    return {"evaluation": "multiview", "model": label, **scores, "num_objects": len(objects),
            "comparable": not all_reasons, "reason": "; ".join(all_reasons) or None,
            "per_object": {folder.name: {score: values[i] for score, values in per_object.items() if values}
                           for i, folder in enumerate(objects)},
            "lpips_network": labels["lpips_network"],
            "clip_network": labels["clip_network"], "orbits_root": str(root), "size": list(size)}


def _tiny_clip():
    from lightning_svd.stages.components import open_clip_model

    return open_clip_model("tiny")


# --- the task -------------------------------------------------------------------------------------------------

PROTOCOLS = {"ucf101": evaluate_ucf101, "multiview": evaluate_multiview}


def _markdown(results: dict) -> str:
    keys = ("fvd", "lpips", "psnr", "clip_s", "num_samples", "num_objects", "comparable", "reason", "model")
    rows = "\n".join(f"| {k} | {results[k]} |" for k in keys if k in results)
    return f"# Evaluation: {results['evaluation']}\n\n| key | value |\n|---|---|\n{rows}\n"


def run(cfg, ctx) -> dict:
    protocol = cfg.evaluation.protocol
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown evaluation.protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")
    with torch.no_grad():
        results = {"experiment": cfg.experiment, "profile": cfg.profile, **PROTOCOLS[protocol](cfg, ctx)}
    ctx.write_results(results, _markdown(results))
    writer = ctx.tensorboard()
    for key in ("fvd", "lpips", "psnr", "clip_s"):
        if isinstance(results.get(key), float):
            writer.add_scalar(f"eval/{key}", results[key], 0)
    ctx.log.info(_markdown(results))
    return results
