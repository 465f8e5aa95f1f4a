"""Task `train`: one training stage from config (DataModule + stage + Lightning Trainer), resumable.

`trainer.*` passes straight to `lightning.Trainer`; TensorBoard logs go to `<run_dir>/tensorboard` and
checkpoints to `<run_dir>/checkpoints` (`last.ckpt` every `train.checkpoint_every_n_steps` and at the end).
With `resume=true` a run dir holding `checkpoints/last.ckpt` continues from it; `init_from=` seeds a new
stage from an earlier one (or from released weights: an official single file). The work itself is
`lightning_svd.training.train`, which the ablation's proxies run too.
"""

from .. import training


def run(cfg, ctx, callbacks=()) -> dict:
    return training.train(cfg, ctx, callbacks)
