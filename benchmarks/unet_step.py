"""Training-step cost of our VideoUNet against diffusers' UNetSpatioTemporalConditionModel, same config.

Forward + backward (full fine-tune, loss = mean square of the output) time and peak memory, printed with the
ratios ours / diffusers. Each model is measured in its own child process so peak memory is not shared.
First both models are checked to compute the same function on the same weights.

    PYTHONPATH=. python benchmarks/unet_step.py --device cpu                      # mid-size config, fp32
    PYTHONPATH=. python benchmarks/unet_step.py --device cuda --preset svd --frames 14 --height 40 --width 72 \
        --dtype bf16 [--checkpointing]

Needs diffusers (a test-only dependency). Never run as a test.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from lightning_svd.models.embeddings import timestep_embedding
from lightning_svd.models.unet import VideoUNet
from lightning_svd.models.unet_diffusers import VIDEO_CLASS, sgm_to_diffusers_names, unet_config_from_diffusers

DIFFUSERS_CONFIGS = {
    "tiny": {  # CPU smoke tests (benchmarks/gpu_suite.py --tiny): two levels, attention at the first
        "in_channels": 8,
        "out_channels": 4,
        "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "num_attention_heads": (2, 4),
        "cross_attention_dim": 32,
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 24,
    },
    "mid": {
        "in_channels": 8,
        "out_channels": 4,
        "block_out_channels": (64, 128, 256, 256),
        "num_attention_heads": (2, 4, 8, 8),
        "cross_attention_dim": 256,
        "addition_time_embed_dim": 64,
        "projection_class_embeddings_input_dim": 192,
    },
    "svd": {},
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--preset", default="mid", choices=sorted(DIFFUSERS_CONFIGS))
    parser.add_argument("--batch", type=int, default=1, help="clips per step")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=32, help="latent height")
    parser.add_argument("--width", type=int, default=32, help="latent width")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating measurements per model; the fastest counts (noise)"
    )
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in both models")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--only", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    return parser.parse_args()


def diffusers_model(args: argparse.Namespace):
    from diffusers import UNetSpatioTemporalConditionModel
    from diffusers.utils import logging

    logging.set_verbosity_error()

    torch.manual_seed(0)
    return UNetSpatioTemporalConditionModel(**DIFFUSERS_CONFIGS[args.preset])


def our_model(reference) -> VideoUNet:
    """Our UNet with the diffusers model's config and weights."""
    config = unet_config_from_diffusers({**dict(reference.config), "_class_name": VIDEO_CLASS})
    with torch.device("meta"):
        unet = VideoUNet(config)
    return copy_diffusers_weights(unet, reference, assign=True)


def copy_diffusers_weights(unet: VideoUNet, reference, assign: bool = False) -> VideoUNet:
    """Load the diffusers model's weights into our UNet of the same config (strict); `assign` shares them."""
    names = sgm_to_diffusers_names(unet.config, list(unet.state_dict()), VIDEO_CLASS)
    weights = reference.state_dict()
    unet.load_state_dict({ours: weights[theirs] for ours, theirs in names.items()}, strict=True, assign=assign)
    return unet


def make_inputs(args: argparse.Namespace, reference) -> dict[str, torch.Tensor]:
    config = reference.config
    generator = torch.Generator().manual_seed(1)
    ids = config.projection_class_embeddings_input_dim // config.addition_time_embed_dim
    return {
        "sample": torch.randn(
            args.batch, args.frames, config.in_channels, args.height, args.width, generator=generator
        ),
        "c_noise": torch.randn(args.batch, generator=generator),
        "context": torch.randn(args.batch, 1, config.cross_attention_dim, generator=generator),
        "ids": torch.rand(args.batch, ids, generator=generator) * 100,
    }


def step_function(which: str, model, inputs: dict[str, torch.Tensor], args: argparse.Namespace):
    """A closure running one model on the shared inputs (our contract vs diffusers' (B, T, ...) contract)."""
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    sample = inputs["sample"].to(device, dtype)
    c_noise, context, ids = (inputs[k].to(device) for k in ("c_noise", "context", "ids"))
    frames = args.frames
    if which == "diffusers":
        context = context.to(dtype)
        return lambda: model(sample, c_noise, context, ids).sample.flatten(0, 1)
    config = model.config
    id_dim = config.adm_in_channels // ids.shape[1]
    y = timestep_embedding(ids.flatten(), id_dim).reshape(ids.shape[0], -1).repeat_interleave(frames, 0).to(dtype)
    flat = sample.flatten(0, 1)
    per_frame_noise = c_noise.repeat_interleave(frames)
    per_frame_context = context.repeat_interleave(frames, 0).to(dtype)
    return lambda: model(flat, per_frame_noise, per_frame_context, y, num_frames=frames)


def training_step(model, run):
    """One full fine-tune step of `run` (a `step_function` closure): loss = mean square of the output."""

    def train_step() -> None:
        run().float().square().mean().backward()
        model.zero_grad(set_to_none=True)

    return train_step


def synchronise(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def saved_activation_bytes(model: torch.nn.Module, run) -> int:
    """Bytes of the distinct non-parameter tensors autograd keeps for backward in one forward pass: the
    activation memory of a training step, exact and independent of allocator and machine load."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = run()
    del output
    return sum(storages.values())


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(which: str, args: argparse.Namespace) -> dict[str, float]:
    """Time and peak memory of warm-up + timed training steps of one model (run in a child process).

    On CPU the wall time depends on what else the machine runs, so the process CPU time is reported too.
    """
    reference = diffusers_model(args)
    inputs = make_inputs(args, reference)
    model = reference if which == "diffusers" else our_model(reference)
    if which == "ours":
        del reference
    model = model.to(args.device, DTYPES[args.dtype]).train()
    if args.checkpointing and which == "diffusers":
        model.enable_gradient_checkpointing()
    elif args.checkpointing:
        model.set_gradient_checkpointing(True)
    run = step_function(which, model, inputs, args)
    train_step = training_step(model, run)
    train_step()
    synchronise(args.device)
    saved = 0 if args.checkpointing else saved_activation_bytes(model, run)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = current_rss_bytes()
    wall, cpu = [], []
    for _ in range(args.steps):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        train_step()
        synchronise(args.device)
        wall.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - start_cpu)
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {
        "seconds": statistics.median(wall),
        "cpu_seconds": statistics.median(cpu),
        "peak_mb": peak / 2**20,
        "saved_mb": saved / 2**20,
    }


@torch.no_grad()
def check_same_function(args: argparse.Namespace) -> float:
    """Relative max difference of the two models' outputs on the same weights and inputs."""
    reference = diffusers_model(args)
    inputs = make_inputs(args, reference)
    ours = our_model(reference).to(args.device, DTYPES[args.dtype]).eval()
    reference = reference.to(args.device, DTYPES[args.dtype]).eval()
    expected = step_function("diffusers", reference, inputs, args)().float()
    got = step_function("ours", ours, inputs, args)().float()
    return ((got - expected).abs().max() / expected.abs().max()).item()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only:
        print(json.dumps(measure(args.only, args)))
        return
    setting = (
        f"preset={args.preset} device={args.device} dtype={args.dtype} latents={args.batch}x{args.frames}x"
        f"{args.height}x{args.width} checkpointing={args.checkpointing} threads={torch.get_num_threads()}"
    )
    print(setting)
    print(f"same function: relative max difference {check_same_function(args):.2e}")
    rounds = {"ours": [], "diffusers": []}
    for _ in range(args.rounds):
        for which, measured in rounds.items():
            child = subprocess.run(
                [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--only", which],
                check=True,
                capture_output=True,
                text=True,
            )
            measured.append(json.loads(child.stdout.strip().splitlines()[-1]))
    timing = "cpu_seconds" if args.device == "cpu" else "seconds"
    results = {which: min(measured, key=lambda m: m[timing]) for which, measured in rounds.items()}
    for which, best in results.items():
        per_round = ", ".join(f"{m[timing]:.3f}" for m in rounds[which])
        print(
            f"{which:>9}: {best[timing]:.3f} {timing.replace('_', ' ')}/step (rounds: {per_round}; wall "
            f"{best['seconds']:.3f} s), peak step memory {best['peak_mb']:.0f} MiB, activations saved for "
            f"backward {best['saved_mb']:.0f} MiB"
        )
    ours, theirs = results["ours"], results["diffusers"]
    ratios = {
        timing.replace("_", " "): ours[timing] / theirs[timing],
        "peak step memory": ours["peak_mb"] / theirs["peak_mb"] if theirs["peak_mb"] > 0 else float("nan"),
    }
    if not args.checkpointing:
        ratios["saved activations"] = ours["saved_mb"] / theirs["saved_mb"]
    print("ratio ours/diffusers: " + ", ".join(f"{name} {value:.3f}" for name, value in ratios.items()))


if __name__ == "__main__":
    main()
