"""Run one stage experiment through the train task with tiny test sizes."""

from pathlib import Path

from lightning_svd.config import load_config
from lightning_svd.run_context import create_run

# Two quiet steps; FAST also shrinks the tiny profile's sizes so a run takes seconds on 2 cores.
TWO_STEPS = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "trainer.max_steps=2"]
FAST = ["train.height=16", "train.width=16", "train.data.batch_size=1", *TWO_STEPS]


def tiny_run(experiment: str, run_dir: Path, table: Path, *overrides: str, callbacks=(), fast: bool = True) -> dict:
    """The train task on `table`; `fast=False` keeps the experiment's tiny-profile sizes as a user gets them."""
    from lightning_svd.tasks import train

    base = FAST if fast else TWO_STEPS
    cfg = load_config(experiment, "tiny", [*base, f"train.data.table={table}", f"run_dir={run_dir}", *overrides])
    with create_run(cfg) as ctx:
        return train.run(cfg, ctx, callbacks=callbacks)
