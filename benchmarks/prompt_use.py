"""Does a trained text stage use its prompt? The denoiser's x0 error on noised real clips with their own captions,
with the captions shuffled across the batch, and with empty captions, at a few noise levels.

A stage that follows its prompts has a clearly lower error with the right captions; one that reads everything it
needs from the noisy input (the colour of a clip survives SD's top noise level in tiny latents) shows three equal
numbers. Same noise and the same clips for the three conditions.

    PYTHONPATH=. python benchmarks/prompt_use.py RUN/arms/ARM/seed0/checkpoints/last.ckpt RUN/arms/ARM/clips.parquet

Never run as a test.
"""

import argparse

import torch

from data_modules.clips import ClipDataModule
from data_modules.motion_buckets import MotionBuckets
from lightning_svd.stages import load_stage


def x0_errors(stage, batch: dict, num_frames: int, sigmas: list[float], seed: int) -> list[float]:
    with torch.no_grad(), stage.ema_weights():
        latents = stage.encode_frames(batch["video"])
        cond = stage.conditioner(batch, num_frames=num_frames, generator=torch.Generator().manual_seed(seed))
        network_cond = stage.network_condition(cond, batch, num_frames, None)
        errors = []
        for sigma in sigmas:
            noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
            sigma_batch = torch.full((latents.shape[0],), sigma)
            denoised = stage.denoiser(latents + sigma * noise, sigma_batch, network_cond)
            errors.append(((denoised - latents) ** 2).mean().item())
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("clips", help="a clip table (Parquet file or folder) with captions")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    parser.add_argument("--clips-per-batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    stage = load_stage(args.checkpoint).eval()
    config = stage.hparams.stage
    num_frames, height, width = int(config["num_frames"]), int(config["height"]), int(config["width"])
    buckets = stage.motion_buckets or MotionBuckets([0.0, 1.0], [0.0, 1.0])  # text stages keep none
    data = ClipDataModule(args.clips, num_frames, height, width, buckets, strides=[1],
                          batch_size=args.clips_per_batch, seed=args.seed)
    batch = next(iter(data.train_dataloader()))
    captions = list(batch["txt"])
    conditions = {"right": captions, "shuffled": captions[1:] + captions[:1], "empty": [""] * len(captions)}
    print(f"x0 mean squared error of {len(captions)} clips at sigma " + ", ".join(f"{s:g}" for s in args.sigmas))
    for name, texts in conditions.items():
        errors = x0_errors(stage, {**batch, "txt": texts}, num_frames, args.sigmas, args.seed)
        print(f"{name:>8}: " + "  ".join(f"{e:.4f}" for e in errors))


if __name__ == "__main__":
    main()
