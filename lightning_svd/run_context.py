"""The run directory every task writes into: resolved config, log file, TensorBoard folder and results."""

import json
import logging
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf


class RunContext:
    """What a task gets besides its config: where to write, a logger, TensorBoard and a results writer."""

    def __init__(self, run_dir: Path, log: logging.Logger):
        self.run_dir = run_dir
        self.log = log
        self._tensorboard = None

    @property
    def tensorboard_dir(self) -> Path:
        return self.run_dir / "tensorboard"

    def tensorboard(self):
        """A SummaryWriter on `<run_dir>/tensorboard`, created on first use."""
        if self._tensorboard is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(self.tensorboard_dir))
        return self._tensorboard

    def write_results(self, results: dict, markdown: str) -> None:
        """Write `results.json` and `results.md` atomically (a crash never leaves half a file)."""
        for name, text in (("results.json", json.dumps(results, indent=2, default=str)), ("results.md", markdown)):
            partial = self.run_dir / f".{name}.partial"
            partial.write_text(text if text.endswith("\n") else text + "\n")
            partial.replace(self.run_dir / name)

    def close_tensorboard(self) -> None:
        """Flush and close the SummaryWriter (if one was opened); the logger stays the caller's."""
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    def close(self) -> None:
        self.close_tensorboard()
        for handler in list(self.log.handlers):
            handler.close()
            self.log.removeHandler(handler)

    def __enter__(self) -> "RunContext":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def default_run_dir(cfg: DictConfig) -> Path:
    """`<runs_root>/<experiment>/<timestamp>`, with a suffix if two runs start in the same second."""
    base = Path(cfg.runs_root) / cfg.experiment / time.strftime("%Y%m%d-%H%M%S")
    candidate, suffix = base, 1
    while candidate.exists():
        candidate, suffix = base.with_name(f"{base.name}-{suffix}"), suffix + 1
    return candidate


RUN_DIR_ENV = "LIGHTNING_SVD_RUN_DIR"


def create_run(cfg: DictConfig) -> RunContext:
    """Create (or, in a DDP worker process, join) the run directory.

    Lightning's DDP launcher starts every other local rank by running the same command again (with LOCAL_RANK set);
    the first process exports its run directory so those ranks write into it instead of making timestamped folders
    of their own. Across several nodes, give `run_dir=` on a shared file system.
    """
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir).expanduser()
    elif os.environ.get(RUN_DIR_ENV) and int(os.environ.get("LOCAL_RANK", "0")) > 0:
        run_dir = Path(os.environ[RUN_DIR_ENV])
    else:
        run_dir = default_run_dir(cfg)
    os.environ[RUN_DIR_ENV] = str(run_dir.resolve())
    (run_dir / "tensorboard").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    log = logging.getLogger(f"lightning_svd.run.{run_dir}")
    log.setLevel(logging.INFO)
    log.propagate = False
    file_handler = logging.FileHandler(run_dir / "run.log")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(file_handler)
    log.addHandler(console)
    return RunContext(run_dir, log)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and, where the task uses it, torch (the preference app never imports torch)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
