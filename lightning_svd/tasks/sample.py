"""Task `sample`: videos from a trained stage checkpoint (EMA weights), written as MP4 and GIF.

`python run.py experiment=sample model.checkpoint=RUN_OR_CKPT prompt="..."` for text stages, `image=PATH` for
image-to-video stages (camera LoRA, multi-view too), `image=FIRST image_last=LAST` for frame interpolation; images
are resized and centre-cropped to the model's size. What a checkpoint needs is its stage's `generates_from`.
On a GPU with bf16 support the sampler runs under bf16 autocast (float32 weights, as Lightning's `bf16-mixed`
trains them); elsewhere in float32.
"""

import contextlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data_modules.clips import resize_and_crop
from lightning_svd.errors import UserError
from lightning_svd.stages import load_stage
from lightning_svd.stages.checkpoints import resolve_checkpoint
from lightning_svd.video import write_video


def conditioning_image(path: str, height: int, width: int) -> torch.Tensor:
    """(1, 3, height, width) in [-1, 1] from an image file."""
    if not Path(path).is_file():
        raise UserError(f"image {path} not found; give a path to a PNG or JPEG")
    pixels = np.asarray(Image.open(path).convert("RGB"))
    return resize_and_crop(pixels[None], height, width)


def write_gif(path: Path, frames: np.ndarray, fps: int) -> Path:
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0)
    return path


def sampling_inputs(cfg, stage) -> tuple[list[str] | None, torch.Tensor | None]:
    """The prompts or conditioning images the checkpoint's stage generates from, `sampling.count` of each."""
    name, count = stage.hparams.stage["name"], int(cfg.sampling.count)
    height, width = int(stage.hparams.stage["height"]), int(stage.hparams.stage["width"])
    if stage.generates_from == "prompt":
        if not cfg.prompt:
            raise UserError(f"the {name} stage generates from text: give prompt=\"...\"")
        return [str(cfg.prompt)] * count, None
    if stage.generates_from == "image":
        if not cfg.image:
            raise UserError(f"the {name} stage animates an image: give image=PATH (a PNG or JPEG)")
        return None, conditioning_image(cfg.image, height, width).expand(count, -1, -1, -1)
    if not (cfg.image and cfg.image_last):
        raise UserError(f"the {name} stage fills in the frames between two: give image=FIRST and image_last=LAST")
    pair = torch.cat([conditioning_image(cfg.image, height, width), conditioning_image(cfg.image_last, height, width)])
    return None, pair.expand(count, -1, -1, -1, -1)


def sampling_precision(device: torch.device) -> tuple[str, contextlib.AbstractContextManager]:
    """bf16 autocast on a CUDA device that supports bf16 (float32 sampling there costs several times the time and
    memory), else float32: (name, context manager)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16 autocast", torch.autocast("cuda", dtype=torch.bfloat16)
    return "fp32", contextlib.nullcontext()


def run(cfg, ctx) -> dict:
    if not cfg.model.checkpoint:
        raise UserError("set model.checkpoint=PATH (a stage .ckpt or a training run dir) to sample from")
    checkpoint = resolve_checkpoint(cfg.model.checkpoint)
    stage = load_stage(checkpoint, "cuda" if torch.cuda.is_available() else "cpu")
    hparams = stage.hparams.stage
    prompts, images = sampling_inputs(cfg, stage)
    precision, autocast = sampling_precision(stage.device)
    try:
        with autocast:
            videos = stage.generate(prompts=prompts, images=images, seed=int(cfg.seed),
                                    num_frames=cfg.sampling.num_frames, steps=cfg.sampling.steps,
                                    fps=float(cfg.sampling.fps), motion_bucket_id=int(cfg.sampling.motion_bucket_id))
    except ValueError as error:
        raise UserError(f"{hparams['name']} stage: {error}") from None
    fps = int(cfg.sampling.fps)
    written = []
    for index, video in enumerate(videos.numpy()):
        mp4 = write_video(ctx.run_dir / f"sample_{index:02d}.mp4", video, fps)
        gif = write_gif(ctx.run_dir / f"sample_{index:02d}.gif", video, fps)
        written.append({"mp4": mp4.name, "gif": gif.name})
    results = {"experiment": cfg.experiment, "checkpoint": str(checkpoint), "stage": hparams["name"],
               "prompt": cfg.prompt if prompts else None, "image": cfg.image if images is not None else None,
               "image_last": cfg.image_last if images is not None and images.ndim == 5 else None,
               "frames": int(videos.shape[1]), "size": [int(videos.shape[2]), int(videos.shape[3])],
               "precision": precision, "videos": written}
    listing = "\n".join(f"- ![{v['gif']}]({v['gif']}) ({v['mp4']})" for v in written)
    ctx.write_results(results, f"# Samples from {checkpoint}\n\n{listing}\n")
    ctx.log.info(f"{len(written)} video(s) -> {ctx.run_dir}")
    return results
