"""One arm-seed of an ablation: train the proxy from `<dir>/config.yaml`, then sample the fixed prompts.

The same function runs in the ablation's own process (`ablation.parallel_jobs=1`) or in worker processes
(`python -m lightning_svd.ablation.job`, which runs each job folder it reads on stdin), so two single-threaded
trainings share a 2-core machine, and each worker pays its imports once, not once per job. The job leaves
`trained.json` and `samples.npy` behind; the ablation process measures FVD and writes `done.json`.
"""

import contextlib
import json
import logging
import os
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from lightning_svd import training
from lightning_svd.ablation.evaluate import sample_arm
from lightning_svd.run_context import RunContext
from lightning_svd.stages import load_stage

CONFIG = "config.yaml"
SAMPLING = "sampling.json"
TRAINED = "trained.json"
SAMPLES = "samples.npy"
LOG = "job.log"
WORKER_LOG = "worker.log"


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run the enclosed code on `count` torch threads (unchanged when None), then restore the previous count."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def parent_threads(section) -> int | None:
    """Torch threads for the ablation's own process: every worker's, since its own work (curation, the image
    model, the judge, evaluation) never overlaps theirs; None (torch's default) when `torch_threads` is unset."""
    if not section.torch_threads:
        return None
    return max(1, int(section.parallel_jobs)) * int(section.torch_threads)


def write_job(out: Path, proxy, prompts: list[dict], samples_per_prompt: int, steps: int, threads: int | None) -> None:
    """Everything a worker needs, beside the outputs it will write."""
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(proxy, out / CONFIG, resolve=True)
    sampling = {"prompts": prompts, "samples_per_prompt": samples_per_prompt, "steps": steps, "threads": threads,
                "precision": str(proxy.trainer.get("precision", "32-true"))}
    (out / SAMPLING).write_text(json.dumps(sampling, indent=1))


def train_and_sample(out: Path, log: logging.Logger) -> dict:
    """Train (resuming from `checkpoints/last.ckpt` if present), sample every prompt, record what happened."""
    if (out / TRAINED).is_file() and (out / SAMPLES).is_file():
        return json.loads((out / TRAINED).read_text())
    proxy = OmegaConf.load(out / CONFIG)
    sampling = json.loads((out / SAMPLING).read_text())
    trained = training.train(proxy, RunContext(out, log))
    stage = load_stage(trained["checkpoint"])
    videos = sample_arm(stage, sampling["prompts"], int(sampling["samples_per_prompt"]), int(proxy.seed),
                        int(proxy.train.num_frames), int(sampling["steps"]), sampling.get("precision", "32-true"))
    partial = out / f".{SAMPLES}.partial.npy"
    np.save(partial, videos)
    partial.replace(out / SAMPLES)
    record = {"train_steps": trained["steps"], "final_loss": trained["final_loss"],
              "checkpoint": trained["checkpoint"], "resumed_from": trained["resumed_from"]}
    (out / TRAINED).write_text(json.dumps(record, indent=1))
    return record


@contextlib.contextmanager
def job_logger(out: Path):
    """A logger writing to `<out>/job.log` while the job runs."""
    log = logging.getLogger(f"lightning_svd.ablation.job.{out}")
    log.setLevel(logging.INFO)
    handler = logging.FileHandler(out / LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        yield log
    finally:
        log.removeHandler(handler)
        handler.close()


@contextlib.contextmanager
def output_to(path: Path):
    """Send this process's stdout and stderr to `path` at the file-descriptor level, so that warnings and the
    output of native code land in the job's log too."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)


def run_job(out: Path) -> None:
    threads = json.loads((out / SAMPLING).read_text())["threads"]
    if threads:
        torch.set_num_threads(int(threads))
    with job_logger(out) as log:
        train_and_sample(out, log)


def main() -> int:
    """Worker loop: run each job folder read from stdin, with its output in `<folder>/worker.log`, and answer
    `ok` or `failed` for it on stdout (a failed job's traceback ends its worker.log)."""
    from lightning_svd.quiet import silence_third_party

    silence_third_party()
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    for line in sys.stdin:
        if not line.strip():
            continue
        out = Path(line.strip())
        with output_to(out / WORKER_LOG):
            try:
                run_job(out)
                status = "ok"
            except Exception:
                traceback.print_exc()
                status = "failed"
        replies.write(status + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
