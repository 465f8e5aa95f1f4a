"""Running the evaluate and report tasks from tests, and stage checkpoints made without training."""

import torch
from omegaconf import OmegaConf

from lightning_svd.config import load_config
from lightning_svd.run_context import create_run
from lightning_svd.stages import STAGES
from lightning_svd.tasks import get_task


def save_stage_checkpoint(experiment: str, path, *overrides: str):
    """A stage checkpoint as the train task leaves one (its class and settings in the file), without training."""
    cfg = load_config(experiment, "tiny", list(overrides))
    stage = STAGES[cfg.train.name](stage=OmegaConf.to_container(cfg.train, resolve=True), seed=0)
    torch.save({"hyper_parameters": dict(stage.hparams), "state_dict": stage.state_dict()}, path)
    return path


def run_task(experiment, run_dir, overrides, profile="tiny"):
    cfg = load_config(experiment, profile, [*overrides, f"run_dir={run_dir}"])
    with create_run(cfg) as ctx:
        return get_task(cfg.task)(cfg, ctx)
