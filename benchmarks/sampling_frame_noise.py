"""How much do a trained proxy's frames change with the share of noise its frames have in common at sampling?

Loads the final checkpoint of finished arm-seeds of a tiny ablation, samples the ablation's prompts (its
`sampling.json`) once per value of `diffusion.sampling.shared_frame_noise`, and prints the mean |change| between
consecutive frames (0-255; the real clips' value is in the ablation's results.md) and the samples' grain (mean
|frame - 3x3 median|), which the judge of degraded-looking samples reads: a share that steadies the frames should
leave it where it was.

    PYTHONPATH=. python benchmarks/sampling_frame_noise.py RUN/arms/ARM_A/seed0 RUN/arms/ARM_B/seed0 \
        --shared 0.95 0.99 0.995 0.999

About 10 s per value and arm on two threads. Never run as a test.
"""

import argparse
import json
from pathlib import Path

import torch

from lightning_svd.ablation.evaluate import frame_difference, grain, sample_arm
from lightning_svd.ablation.job import SAMPLING
from lightning_svd.stages import load_stage
from lightning_svd.training import last_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", type=Path, nargs="+", help="arm-seed folders of a finished ablation")
    parser.add_argument("--shared", type=float, nargs="+", default=[0.95, 0.99, 0.995, 0.999])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| arm-seed | sampling share | frame change | grain |\n|---|---:|---:|---:|")
    for job in args.jobs:
        stage = load_stage(last_checkpoint(job)).eval()
        sampling = json.loads((job / SAMPLING).read_text())
        for shared in args.shared:
            stage.diffusion.sampling_shared_frame_noise = shared
            videos = sample_arm(stage, sampling["prompts"], int(sampling["samples_per_prompt"]), 0,
                                stage.num_frames, int(sampling["steps"]), sampling.get("precision", "32-true"))
            print(f"| {job.parent.name}/{job.name} | {shared:g} | {frame_difference(videos):.2f} | "
                  f"{grain(videos).mean():.2f} |", flush=True)


if __name__ == "__main__":
    main()
