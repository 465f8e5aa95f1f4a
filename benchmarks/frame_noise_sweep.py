"""How much do a tiny proxy's frames change with the share of noise its clips' frames have in common?

Retrains one arm-seed of a finished tiny ablation (its config: clips, image model, recipe) once per value of
`train.diffusion.shared_frame_noise`, samples the ablation's prompts from two seeds, and prints the mean |change|
between consecutive frames (0-255), the ablation's "sample check" (the real clips' value is in its results.md).

    PYTHONPATH=. python benchmarks/frame_noise_sweep.py RUN/arms/ARM/seed0 --shared 0 0.8 0.9 0.95 0.98

About 45 s per value on one CPU thread at the tiny recipe's 200 steps. Never run as a test.
"""

import argparse
import json
import logging
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lightning_svd.ablation.evaluate import frame_difference
from lightning_svd.ablation.job import CONFIG, SAMPLING
from lightning_svd.run_context import RunContext
from lightning_svd.stages import load_stage
from lightning_svd.tasks import train


def frame_change(job: Path, shared: float, steps: int | None, out: Path) -> tuple[list[float], float]:
    """(frame change per sampling seed, final loss) of the job's proxy retrained with `shared`."""
    proxy = OmegaConf.load(job / CONFIG)
    proxy.train.diffusion.shared_frame_noise = shared
    if steps is not None:
        proxy.trainer.max_steps = steps
    proxy.run_dir, proxy.resume = str(out), False
    trained = train.run(proxy, RunContext(out, logging.getLogger("frame_noise_sweep")))
    stage = load_stage(trained["checkpoint"]).eval()
    sampling = json.loads((job / SAMPLING).read_text())
    prompts = [prompt["text"] for prompt in sampling["prompts"]]
    changes = [frame_difference(stage.generate(prompts=prompts, seed=seed, steps=int(sampling["steps"])).numpy())
               for seed in (0, 1)]
    return changes, trained["final_loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path, help="an arm-seed folder of a finished ablation: RUN/arms/ARM/seed0")
    parser.add_argument("--shared", type=float, nargs="+", default=[0.0, 0.8, 0.9, 0.95, 0.98])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the job's)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| shared share | frame change (seed 0, 1) | final loss |\n|---:|---|---:|")
    for shared in args.shared:
        with tempfile.TemporaryDirectory() as out:
            changes, loss = frame_change(args.job, shared, args.steps, Path(out))
        print(f"| {shared:g} | {changes[0]:.1f}, {changes[1]:.1f} | {loss:.3f} |", flush=True)


if __name__ == "__main__":
    main()
