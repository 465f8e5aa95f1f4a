"""Run one stage experiment through the train task with tiny test sizes."""

from pathlib import Path

from lightning_svd.config import load_config
from lightning_svd.run_context import create_run

# Smaller than the tiny profile so every stage's two steps take seconds on 2 cores.
FAST = ["train.height=16", "train.width=16", "train.data.batch_size=1", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "trainer.max_steps=2"]


def tiny_run(experiment: str, run_dir: Path, table: Path, *overrides: str, callbacks=()) -> dict:
    from lightning_svd.tasks import train

    cfg = load_config(experiment, "tiny", [*FAST, f"train.data.table={table}", f"run_dir={run_dir}", *overrides])
    ctx = create_run(cfg)
    try:
        return train.run(cfg, ctx, callbacks=callbacks)
    finally:
        ctx.close()
