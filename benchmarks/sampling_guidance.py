"""How do a finished tiny ablation's arms look when sampled at other guidance scales or frame-noise shares?

Loads the final checkpoint of every arm-seed of a finished main job (`RUN/arms/<arm>/seed<k>`), samples the run's
prompts as the run did (its `sampling.json`, the arm-seed's seed) once per guidance scale, optionally from another
share of noise common to a clip's frames (`diffusion.sampling.shared_frame_noise`), and prints per arm the judge's
degraded-looking share, the grain (mean |frame - 3x3 median|), prompt following (a sample nearest its own prompt's
real clip in mean colour) and frame change (mean |change| between consecutive frames) for each seed, then the
share's mean and seed spread. The judge and the prompts' real clips come from the run's config, rebuilt from the
cache the run filled (same cache_dir).

    PYTHONPATH=. python benchmarks/sampling_guidance.py RUN [--scales 3 1.5 1] [--shared-frame-noise 0.995]
        [--arms ARM ...]

About 20 s per arm-seed and scale on two threads. Never run as a test.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from lightning_svd.ablation.evaluate import frame_difference, grain, prompt_following, prompt_real_clips, sample_arm
from lightning_svd.ablation.job import SAMPLING
from lightning_svd.ablation.judge import build_judge
from lightning_svd.diffusion import build_guider
from lightning_svd.quiet import silence_third_party
from lightning_svd.run_context import create_run
from lightning_svd.stages import load_stage
from lightning_svd.tasks.ablation import plan_arms
from lightning_svd.training import last_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished ablation's run dir")
    parser.add_argument("--scales", type=float, nargs="+", default=[3.0, 1.5, 1.0])
    parser.add_argument("--shared-frame-noise", type=float, default=None,
                        help="sampling share of noise common to a clip's frames (default: the run's)")
    parser.add_argument("--arms", nargs="*", help="arm names (default: every arm of the run)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    silence_third_party()
    torch.set_num_threads(args.threads)
    cfg = OmegaConf.load(args.run / "config.yaml")
    arms = args.arms or sorted(p.name for p in (args.run / "arms").iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory() as scratch:
        cfg.run_dir = scratch
        with create_run(cfg) as ctx:
            plan = plan_arms(cfg, ctx, [int(s) for s in cfg.ablation.seeds])
            shape = plan.shape
            judge = build_judge(cfg.ablation.judge, plan.split, shape.num_frames, shape.height, shape.width,
                                str(cfg.cache_dir), ctx.log)
    clips = prompt_real_clips(plan.prompts, plan.split.real, shape.num_frames, shape.height, shape.width)
    print("| guidance | arm | degraded-looking per seed | mean ± sd | grain per seed | prompt following per seed | "
          "frame change |")
    print("|---:|---|---|---:|---|---|---:|")
    for scale in args.scales:
        for arm in arms:
            shares, grains, following, change = [], [], [], []
            for job in sorted((args.run / "arms" / arm).glob("seed*")):
                stage = load_stage(last_checkpoint(job)).eval()
                stage.diffusion.guider = build_guider({"name": "cfg", "scale": scale})
                if args.shared_frame_noise is not None:
                    stage.diffusion.sampling_shared_frame_noise = args.shared_frame_noise
                sampling = json.loads((job / SAMPLING).read_text())
                videos = sample_arm(stage, sampling["prompts"], int(sampling["samples_per_prompt"]),
                                    int(job.name.removeprefix("seed")), stage.num_frames, int(sampling["steps"]),
                                    sampling.get("precision", "32-true"))
                shares.append(100 * judge.degraded_share(videos))
                grains.append(float(grain(videos).mean()))
                following.append(100 * prompt_following(videos, clips))
                change.append(frame_difference(videos))
            spread = f" ± {np.std(shares, ddof=1):.1f}" if len(shares) > 1 else ""
            print(f"| {scale:g} | {arm} | {' / '.join(f'{s:.0f}' for s in shares)} % | "
                  f"{np.mean(shares):.1f}{spread} % | {' / '.join(f'{g:.2f}' for g in grains)} | "
                  f"{' / '.join(f'{f:.0f}' for f in following)} % | {min(change):.1f}-{max(change):.1f} |", flush=True)


if __name__ == "__main__":
    main()
