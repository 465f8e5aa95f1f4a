"""Cost of one training step of the ablation's proxy UNet under other UNet options, against the recipe's own.

Forward + backward of one batch (the recipe's batch x frames at its latent size, loss = mean square of the
output) and a forward alone, in the recipe's precision (bfloat16 autocast for `bf16-mixed`), one thread unless
told, alternating the variants over several rounds; the fastest round counts and every variant is printed with its
ratio to the first (the recipe; with `--float32`, the recipe in float32) measured in the same run.

    PYTHONPATH=. python benchmarks/proxy_step.py '{"attention_levels": [0]}' '{"model_channels": 24, "norm_groups": 8}'
    PYTHONPATH=. python benchmarks/proxy_step.py --float32 [--threads 2]

Never run as a test.
"""

import argparse
import json
import time

import numpy as np
import torch
from omegaconf import OmegaConf

from data_modules.motion_buckets import MotionBuckets
from lightning_svd.ablation.recipe import proxy_recipe
from lightning_svd.config import load_config
from lightning_svd.models.unet import VideoUNet
from lightning_svd.quiet import silence_third_party
from lightning_svd.training import build_stage


def proxy_unet(options: dict) -> tuple[VideoUNet, dict]:
    """The arms' UNet with `options` over the recipe's `train.unet.options`, and its input shapes."""
    cfg = proxy_recipe(load_config("ablation_aesthetic", "tiny", check_paths=False))
    cfg.train.unet.options = {**OmegaConf.to_container(cfg.train.unet.options), **options}
    stage = build_stage(cfg, MotionBuckets.calibrate(np.linspace(0.0, 1.0, 10)))
    unet = next(m for m in stage.modules() if isinstance(m, VideoUNet))
    frames = int(cfg.train.num_frames)
    factor = int(cfg.train.autoencoder.factor)
    shape = {"batch": int(cfg.train.data.batch_size) * frames, "frames": frames, "channels": unet.config.in_channels,
             "height": int(cfg.train.height) // factor, "width": int(cfg.train.width) // factor,
             "context": unet.config.context_dim}
    return unet, shape


def step_seconds(unet: VideoUNet, shape: dict, backward: bool, bfloat16: bool = False) -> float:
    x = torch.randn(shape["batch"], shape["channels"], shape["height"], shape["width"])
    sigma, context = torch.rand(shape["batch"]), torch.randn(shape["batch"], 8, shape["context"])
    started = time.perf_counter()
    with torch.set_grad_enabled(backward):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            out = unet(x, sigma, context, num_frames=shape["frames"])
        if backward:
            out.float().square().mean().backward()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help="UNet options as JSON, each over the recipe's")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--float32", action="store_true",
                        help="every variant in float32 too, the recipe's float32 as the reference")
    args = parser.parse_args()
    silence_third_party()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    variants = {"recipe": {}, **{text: json.loads(text) for text in args.variants}}
    built = {name: proxy_unet(options) for name, options in variants.items()}
    recipe_precision = str(proxy_recipe(load_config("ablation_aesthetic", "tiny", check_paths=False)).trainer.precision)
    bfloat16 = recipe_precision.startswith("bf16")
    if args.float32:
        built = {**{f"{name}, float32": pair for name, pair in built.items()},
                 **{f"{name}, {'bfloat16 autocast' if bfloat16 else 'float32'}": pair for name, pair in built.items()}}
    precision = {name: bfloat16 and not name.endswith("float32") for name in built}
    best = {name: {"train": float("inf"), "forward": float("inf")} for name in built}
    for _ in range(args.rounds):
        for name, (unet, shape) in built.items():
            best[name]["train"] = min(best[name]["train"], step_seconds(unet, shape, True, precision[name]))
            best[name]["forward"] = min(best[name]["forward"], step_seconds(unet, shape, False, precision[name]))
    base = best[next(iter(built))]
    for name, (unet, shape) in built.items():
        params = sum(p.numel() for p in unet.parameters())
        print(json.dumps({"variant": name, "params": params, "train_step_s": round(best[name]["train"], 4),
                          "forward_s": round(best[name]["forward"], 4),
                          "train_ratio": round(best[name]["train"] / base["train"], 3),
                          "forward_ratio": round(best[name]["forward"] / base["forward"], 3), "shape": shape}))


if __name__ == "__main__":
    main()
