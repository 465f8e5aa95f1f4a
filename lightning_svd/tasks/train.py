"""Task `train`: one training stage from config (DataModule + stage + Lightning Trainer), resumable.

`trainer.*` passes straight to `lightning.Trainer`; TensorBoard logs go to `<run_dir>/tensorboard` and
checkpoints to `<run_dir>/checkpoints` (`last.ckpt` every `train.checkpoint_every_n_steps` and at the end).
With `resume=true` a run dir holding `checkpoints/last.ckpt` continues from it; `init_from=` seeds a new
stage from an earlier one (or from released weights: an official single file). The work itself is
`lightning_svd.training.train`, which the ablation's proxies run too.
"""

from pathlib import Path

from .. import training
from ..stages.checkpoints import check_resumable


def check(cfg) -> None:
    """Strategy conflicts and a broken last.ckpt to resume from fail before the run dir is touched (value ranges and
    init_from are the loader's)."""
    training.check_strategy(cfg)
    if cfg.run_dir and cfg.resume:
        last = training.last_checkpoint(Path(str(cfg.run_dir)).expanduser())
        if last.is_file():
            check_resumable(last)


def run(cfg, ctx, callbacks=()) -> dict:
    return training.train(cfg, ctx, callbacks)
