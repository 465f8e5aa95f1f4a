"""Task `evaluate`: the paper's Table 2 (zero-shot UCF-101 FVD) and Table 3 (multi-view orbits).

`evaluation.protocol` picks one:
- `ucf101` (experiment eval_ucf101): a text stage generates the protocol's samples (per-class counts, raw class
  name, 16 frames, guidance 7, 320x576, resize 240x432, crop 240x320) and FVD compares their features with the
  real clips'; which clips and frames were used is written to `real_clips.json`.
- `multiview` (experiment eval_multiview): a multiview (SVD-MV) stage turns view 0 of each ground-truth orbit into
  21 frames at the orbit's cameras (an image-to-video stage, without cameras, also works), scored with PSNR,
  LPIPS and CLIP-S against the orbit's views.

Results follow `lightning_svd.reporting.runs`, so `experiment=report` renders them beside the paper's rows.
The tiny profile runs both on synthetic sets (cached under `cache_dir`: a UCF-101-shaped tree of corpus scenes
made here, and held-out objects of the synthetic orbit set), with a random-init stage when no checkpoint is
given; every such result is labelled not comparable and says why.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from callbacks import extractor_from_section
from data_modules.multiview import CAMERA_FILE, read_cameras, view_indices
from lightning_svd.errors import UserError
from lightning_svd.evaluation.fvd import FrechetVideoDistance, RealStatisticsCache
from lightning_svd.evaluation.multiview import (
    LPIPS,
    NUM_VIEWS,
    CLIPImageSimilarity,
    MultiViewMetrics,
    read_orbit,
    read_views,
)
from lightning_svd.evaluation.ucf101 import (
    UCF101Index,
    UCF101Protocol,
    UCF101RealClips,
    make_plan,
    preprocess_generated,
)
from lightning_svd.stages import STAGES, load_stage, resolve_checkpoint
from lightning_svd.synthetic.orbits import OrbitSpec, ensure_orbits
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


def evaluated_stage(cfg, height: int, width: int, expected: tuple[str, ...], size_keys: str):
    """The checkpoint's stage, or (tiny profile only) a random-init stage from `train` at the protocol's size.
    `size_keys` names the config keys that set the protocol's size, for the message when the checkpoint's differs."""
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
        raise UserError(f"{label} generates {size[0]}x{size[1]}, the protocol needs {height}x{width}; give a "
                        f"checkpoint trained at that size or set {size_keys} (then not comparable)")
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
    stage, label, model_reasons = evaluated_stage(
        cfg, *protocol.generate_size, expected=("text_to_video",),
        size_keys="ucf101.generate_size=[H,W] with ucf101.resize_size and ucf101.crop_size to match")
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
    if not clips_file.is_file():  # statistics whose clip record is gone are recomputed, so the run can record it
        cache.path(fvd_protocol).unlink(missing_ok=True)
    cached = cache.get_or_compute(fvd_protocol, metric, lambda: _real_clip_batches(index, plan, batch_size,
                                                                                   selections))
    if cached:
        selections = json.loads(clips_file.read_text())
    else:
        clips_file.write_text(json.dumps(selections))
    started = time.perf_counter()
    for start in range(0, len(plan.samples), batch_size):
        samples = plan.samples[start : start + batch_size]
        videos = stage.generate(prompts=[s.prompt for s in samples], seed=samples[0].seed,
                                num_frames=protocol.num_frames, steps=cfg.evaluation.steps, fps=protocol.fps,
                                motion_bucket_id=protocol.motion_bucket_id)
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
            "guidance_scale": float(guider.scale), "motion_bucket_id": protocol.motion_bucket_id,
            "generated_preprocessing": protocol.generated_preprocessing(),
            "generation_seconds": round(seconds, 2),
            "real_clips": "real_clips.json", "samples": "samples.json"}


# --- multi-view ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroundTruthOrbit:
    """One object's ground-truth views (uint8 (V, 3, H, W)) and their cameras, the first view conditioning."""

    name: str
    views: torch.Tensor
    azimuth_rad: torch.Tensor | None   # (V,); None: evenly around the orbit (the stage's default)
    polar_rad: torch.Tensor | None     # (V,); None: the stage's default elevation
    cameras: str                       # where the cameras came from, for the results


def load_orbit(folder: Path, background: int, elevation_deg: float | None) -> GroundTruthOrbit:
    """An orbit folder in the suite's format (`cameras.json` + views, see lightning_svd/synthetic/orbits.py): 21
    views evenly around its listed views, with their cameras. Without `cameras.json`: exactly 21 images in name
    order, azimuths 360 k / 21 and the elevation `elevation_deg` (null = the stage's default)."""
    if (folder / CAMERA_FILE).is_file():
        listed = read_cameras(folder)
        if len(listed) < NUM_VIEWS:
            raise UserError(f"{folder / CAMERA_FILE} lists {len(listed)} views; the protocol needs {NUM_VIEWS}")
        chosen = [listed[i] for i in view_indices(len(listed), NUM_VIEWS)]
        return GroundTruthOrbit(folder.name, read_views([folder / str(v["file"]) for v in chosen], background),
                                torch.tensor([float(v["azimuth_rad"]) for v in chosen]),
                                torch.tensor([float(v["polar_rad"]) for v in chosen]), CAMERA_FILE)
    azimuth = torch.arange(NUM_VIEWS) * 2 * math.pi / NUM_VIEWS
    polar = None if elevation_deg is None else torch.full((NUM_VIEWS,), math.pi / 2 - math.radians(elevation_deg))
    where = "stage default" if elevation_deg is None else f"{elevation_deg:g} deg"
    return GroundTruthOrbit(folder.name, read_orbit(folder, NUM_VIEWS, background), azimuth, polar,
                            f"name order, azimuth 360k/{NUM_VIEWS}, elevation {where}")


def _resized(views: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(views.shape[-2:]) == size:
        return views
    resized = F.interpolate(views.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def generate_orbit(stage, orbit: GroundTruthOrbit, size: tuple[int, int], seed: int, steps: int | None,
                   fps: float, motion_bucket_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(generated, ground truth), both uint8 (1, 21, 3, H, W): the stage turns view 0 into 21 frames. A multiview
    (SVD-MV) stage gets the ground truth's cameras; an image-to-video stage its fps and motion bucket instead."""
    truth = _resized(orbit.views, size)
    first = truth[:1].float() / 127.5 - 1.0
    inputs = {"images": first.to(stage.device), "seed": seed, "num_frames": NUM_VIEWS, "steps": steps}
    if stage.hparams.stage["name"] == "multiview":
        inputs["azimuth_rad"] = orbit.azimuth_rad[None] if orbit.azimuth_rad is not None else None
        inputs["polar_rad"] = orbit.polar_rad[None] if orbit.polar_rad is not None else None
    else:
        inputs.update(fps=fps, motion_bucket_id=motion_bucket_id)
    return stage.generate(**inputs).permute(0, 1, 4, 2, 3), truth[None]


def fit_guider_to_frames(stage, num_frames: int) -> None:
    """A per-frame guidance ramp (SVD's linear_frames) spans the frames generated, not the ones trained on."""
    guider = stage.diffusion.guider
    if hasattr(guider, "num_frames"):
        guider.num_frames = num_frames


def evaluate_multiview(cfg, ctx) -> dict:
    reasons = []
    mv = cfg.multiview
    if cfg.data.multiview_root:
        root = Path(cfg.data.multiview_root).expanduser()
    elif cfg.profile == "tiny":
        spec = OrbitSpec.from_config({**OmegaConf.to_container(cfg.evaluation.synthetic_orbits, resolve=True),
                                      "num_views": NUM_VIEWS})
        root = ensure_orbits(spec, cfg.cache_dir)
        reasons.append(f"synthetic orbits ({spec.num_objects} held-out objects, seed {spec.seed}), not GSO")
    else:
        raise UserError("set data.multiview_root=DIR (one folder of 21 view images per object)")
    objects = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not objects:
        raise UserError(f"no orbit folders under {root}; give data.multiview_root=DIR with one folder per object")
    size = tuple(int(v) for v in mv.size)
    stage, label, model_reasons = evaluated_stage(cfg, *size, expected=("multiview", "image_to_video"),
                                                  size_keys="multiview.size=[H,W]")
    fit_guider_to_frames(stage, NUM_VIEWS)
    lpips = None
    if mv.lpips.backbone_weights and mv.lpips.head_weights:
        lpips = LPIPS(mv.lpips.net, mv.lpips.backbone_weights, mv.lpips.head_weights).to(_device())
    clip = CLIPImageSimilarity(mv.clip.model if mv.clip.model != "tiny" else _tiny_clip(), mv.clip.weights)
    metric = MultiViewMetrics(lpips, clip.to(_device())).to(_device())
    if len(objects) != 50:
        reasons.append(f"{len(objects)} objects (the paper: 50 GSO objects)")
    if size != (576, 576):
        reasons.append(f"size={size[0]}x{size[1]} (paper: 576x576)")
    cameras = {}
    elevation = None if mv.elevation_deg is None else float(mv.elevation_deg)
    for number, folder in enumerate(objects):
        orbit = load_orbit(folder, int(mv.background), elevation)
        cameras[orbit.name] = orbit.cameras
        generated, truth = generate_orbit(stage, orbit, size, int(cfg.seed) + number, cfg.evaluation.steps,
                                          float(mv.fps), int(mv.motion_bucket_id))
        metric.update(generated.to(_device()), truth.to(_device()))
    scores, labels, per_object = metric.compute(), metric.labels(), metric.per_object()
    all_reasons = [*reasons, *model_reasons, *([labels["reason"]] if labels["reason"] else [])]
    return {"evaluation": "multiview", "model": label, "stage": stage.hparams.stage["name"], **scores,
            "num_objects": len(objects), "comparable": not all_reasons, "reason": "; ".join(all_reasons) or None,
            "per_object": {folder.name: {score: values[i] for score, values in per_object.items() if values}
                           for i, folder in enumerate(objects)},
            "cameras": cameras, "lpips_network": labels["lpips_network"], "clip_network": labels["clip_network"],
            "orbits_root": str(root), "size": list(size)}


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
    writer.add_text("eval/comparable", "yes" if results["comparable"] else f"no: {results['reason']}", 0)
    ctx.log.info(_markdown(results))
    return results
