"""Killed mid-run and resumed, a tiny run ends with the uninterrupted run's weights; a 2-process CPU DDP run."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from .tiny import tiny_run

REPO = Path(__file__).resolve().parents[2]
RESUME = ["trainer.max_steps=6", "train.checkpoint_every_n_steps=3", "train.num_frames=2"]


class KillAfterCheckpoint(Callback):
    """SIGKILL the process right after the checkpoint at `step` was written: no clean shutdown at all."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


KILLED_RUN = """
import sys
import torch
torch.set_num_threads({threads})
sys.path.insert(0, {tests!r})
from stages.test_resume_and_ddp import KillAfterCheckpoint, RESUME
from stages.tiny import tiny_run
tiny_run("pretrain_video", {run_dir!r}, {table!r}, *RESUME, callbacks=[KillAfterCheckpoint(4)])
"""


def final_weights(run_dir: Path) -> dict:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    return {**checkpoint["state_dict"], **{f"ema.{k}": v for k, v in checkpoint["ema"]["shadow"].items()}}


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path, clip_table):
    straight = tmp_path / "straight"
    tiny_run("pretrain_video", straight, clip_table, *RESUME)
    interrupted = tmp_path / "interrupted"
    script = KILLED_RUN.format(tests=str(REPO / "tests"), run_dir=str(interrupted), table=str(clip_table),
                               threads=torch.get_num_threads())  # same reduction order as the in-process runs
    killed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    resumed = tiny_run("pretrain_video", interrupted, clip_table, *RESUME)
    assert resumed["resumed_from"] and resumed["steps"] == 6
    expected, got = final_weights(straight), final_weights(interrupted)
    assert expected.keys() == got.keys()
    changed = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not changed, changed[:5]
    start = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=False)
    assert start["global_step"] == 6


def test_two_process_cpu_ddp_run_completes_at_the_global_batch(tmp_path, clip_table):
    """Global batch 8 with 2 per process on two processes: each optimizer step accumulates 2 batches."""
    run_dir = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "run.py", "experiment=pretrain_video", f"run_dir={run_dir}", f"train.data.table={clip_table}",
         "trainer.strategy=ddp", "trainer.devices=2", "trainer.max_steps=2", "train.height=16", "train.width=16",
         "train.num_frames=2", "train.data.batch_size=2", "train.global_batch_size=8",
         "trainer.enable_progress_bar=false"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    results = json.loads((run_dir / "results.json").read_text())
    assert results["world_size"] == 2 and results["steps"] == 2 and results["effective_batch_size"] == 8
    assert "global batch 8 = 2 per process x 2 process(es) x 2 accumulated batches" in result.stderr + result.stdout
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
