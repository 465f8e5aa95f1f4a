"""Probe a tiny image-model recipe: train the ablation's image model with extra overrides, sample the fixed prompts,
and print what the samples look like in numbers (grain, contrast, how often a sample's mean colour is nearest its
own prompt's background colour among the prompts', chance 25 %, and how often a sample shows a shape-sized region in
its own prompt's shape colour against the other prompts'), then the same for 8 captions of its own training clips
(scenes it saw; chance 12.5 %).

    PYTHONPATH=. python benchmarks/image_model_probe.py OUT [key=value ...] [--steps 600] [--threads 1]
        [--corpus texture=0 ...] [--checkpoint CKPT]

`--checkpoint` samples an image model trained already instead of training one: a cached one
(<cache>/image_models/<key>/checkpoints/last.ckpt) or a shipped one (lightning_svd/ablation/weights/<key>.safetensors,
loaded into the recipe's image stage); the corpus options then name the corpus it was trained on, for its captions.
`--samples-per-prompt` sets how many samples each fixed prompt gets (6: 24 samples, a share's binomial sd near 8
points; 24 brings it near 4).

The overrides go over the ablation's proxy recipe and image-pretraining blocks (`ablation.proxy`,
`ablation.image_init.pretrain`) as `ablation.extra_proxy_overrides`, exactly as the ablation builds its image
model; the data is the image model's own clean corpus (`ablation.image_init.corpus` over the ablation corpus). Grain
is the mean |frame - its 3x3 median| in grey levels: at 32x32 flat real frames sit near 1.5, frames with planted
noise near 8 (the ablation corpus' 2-pixel grain; 1-pixel noise: near 4.5). The prompts keep the corpus' caption
template word for word ("textured" included): the random-weight tiny text tower marks colour words by position, and
off the template the image model painted the shapes' colour as the background.
"""

import argparse
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from omegaconf import OmegaConf

from lightning_svd.ablation.data import clip_caption
from lightning_svd.ablation.evaluate import colour_shares, grain, prompt_following, sample_arm
from lightning_svd.ablation.recipe import proxy_recipe
from lightning_svd.config import load_config
from lightning_svd.quiet import silence_third_party
from lightning_svd.run_context import RunContext
from lightning_svd.stages import STAGES, load_init_weights, load_stage
from lightning_svd.synthetic.scenes import COLORS
from lightning_svd.training import clip_table, train


def contrast(videos: np.ndarray) -> np.ndarray:
    return videos.reshape(videos.shape[0], videos.shape[1], -1, 3).astype(np.float32).std(axis=2).mean(axis=(1, 2))


def background_following(videos: np.ndarray, prompts: list[dict]) -> float:
    """Share of samples (prompt-major per repetition) whose mean colour lies nearest their own prompt's background
    colour among the prompts' background colours (chance: 1 / number of prompts)."""
    names = [re.search(r"an? (\w+) (?:textured )?background", p["text"]).group(1) for p in prompts]
    flat_clips = np.array([COLORS[name] for name in names], dtype=np.uint8).reshape(len(names), 1, 1, 1, 3)
    return prompt_following(videos, flat_clips)


def shapes_shown(videos: np.ndarray, prompts: list[dict]) -> tuple[float, float]:
    """The ablation's shape check (`colour_shares`) with the prompts' named shape colours."""
    names = [re.search(r"behind (?:a|an|two|three) (\w+) ", p["text"]).group(1) for p in prompts]
    return colour_shares(videos, [np.array(COLORS[name], np.float32) for name in names])


def training_prompts(table: Path, count: int) -> list[dict]:
    """`count` distinct captions of the image model's own training clips, drawn with a fixed seed: what it draws for
    scenes it saw, against the fixed prompts' colour pairs, which its corpus need not hold."""
    captions = list(dict.fromkeys(filter(None, map(clip_caption, pq.read_table(table).to_pylist()))))
    chosen = np.random.default_rng(0).choice(len(captions), min(count, len(captions)), replace=False)
    return [{"id": f"seen{i}", "text": captions[index]} for i, index in enumerate(chosen)]


def image_stage(cfg, checkpoint: Path):
    """A trained stage checkpoint as it is, or shipped UNet weights in the recipe's image stage."""
    if checkpoint.suffix != ".safetensors":
        return load_stage(checkpoint)
    stage = STAGES[cfg.train.name](stage=OmegaConf.to_container(cfg.train, resolve=True))
    load_init_weights(stage, checkpoint)
    return stage.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sampling-steps", type=int, default=10)
    parser.add_argument("--cache-dir", default="~/.cache/lightning_svd")
    parser.add_argument("--corpus", nargs="*", default=[], metavar="KEY=VALUE",
                        help="corpus keys of the image model's own data, over ablation.image_init.corpus")
    parser.add_argument("--checkpoint", type=Path,
                        help="an image model (.ckpt, or shipped .safetensors) to sample instead of training one")
    parser.add_argument("--samples-per-prompt", type=int, default=6, help="samples of each fixed prompt")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.checkpoint and not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint} not found: give a cached image model's checkpoints/last.ckpt or "
                     "a shipped lightning_svd/ablation/weights/<key>.safetensors")
    silence_third_party()
    torch.set_num_threads(args.threads)
    ablation = load_config("ablation_aesthetic", "tiny", check_paths=False)
    ablation.ablation.extra_proxy_overrides = [f"trainer.max_steps={args.steps}", *args.overrides]
    cfg = proxy_recipe(ablation, image=True)
    cfg.corpus = OmegaConf.merge(ablation.corpus, ablation.ablation.image_init.corpus,
                                 OmegaConf.from_dotlist(args.corpus))
    cfg.train.data.table, cfg.run_dir, cfg.cache_dir, cfg.resume = None, str(args.out), args.cache_dir, False
    ctx = RunContext(args.out, logging.getLogger("probe"))
    if args.checkpoint:  # sample it as it is; the run dir gets the clip table its captions come from
        args.out.mkdir(parents=True, exist_ok=True)
        clip_table(cfg, ctx)
        trained, seconds = {"checkpoint": args.checkpoint, "steps": None, "final_loss": None}, None
    else:
        started = time.perf_counter()
        trained = train(cfg, ctx)
        seconds = round(time.perf_counter() - started, 1)
    prompts = [{"id": f"p{i}", "text": text} for i, text in enumerate([
        "a red textured background behind three pink squares moving quickly as the camera pans down-right, with "
        "the words 'LIVE 24/7' on screen",
        "a white textured background behind a purple square standing still",
        "a teal textured background behind two brown squares moving quickly as the camera pans down-left",
        "a green textured background behind three purple circles moving quickly as the camera pans down-right, "
        "with the words 'WWW.EXAMPLE.COM' on screen"])]
    stage = image_stage(cfg, Path(trained["checkpoint"]))
    videos = sample_arm(stage, prompts, args.samples_per_prompt, 0, 1, args.sampling_steps, str(cfg.trainer.precision))
    np.save(args.out / "samples.npy", videos)
    seen = training_prompts(args.out / "clip_table.parquet", 8)
    seen_videos = sample_arm(stage, seen, 4, 0, 1, args.sampling_steps, str(cfg.trainer.precision))
    np.save(args.out / "seen_samples.npy", seen_videos)
    report = {"train_seconds": seconds, "checkpoint": str(args.checkpoint),
              "steps": trained["steps"], "final_loss": trained["final_loss"],
              "grain": round(float(grain(videos).mean()), 2), "grain_sd": round(float(grain(videos).std()), 2),
              "contrast": round(float(contrast(videos).mean()), 1),
              "background_following": round(background_following(videos, prompts), 3),
              "shapes_own_others": [round(share, 3) for share in shapes_shown(videos, prompts)],
              "seen_background_following": round(background_following(seen_videos, seen), 3),
              "seen_shapes_own_others": [round(share, 3) for share in shapes_shown(seen_videos, seen)],
              "overrides": args.overrides,
              "corpus": args.corpus}
    (args.out / "probe.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
