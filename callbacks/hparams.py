"""Hyperparameters logged together with the run's final metrics, so TensorBoard's HParams view compares runs.

The train task's logger writes no hyperparameter summary at start (`default_hp_metric=False`): a summary
without metrics would leave the HParams view with nothing to compare. This callback writes the one summary at
the end, with the final training loss and whatever the other callbacks measured (FVD).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lightning.pytorch.callbacks import Callback


class HParamsLogging(Callback):
    """`params`: the settings to compare runs by (nested dicts are flattened to `a/b` keys by the logger);
    `sources`: objects with `summary_metrics() -> dict`, read when training ends."""

    def __init__(self, params: Mapping, sources: Sequence = ()):
        self.params, self.sources = dict(params), list(sources)
        self.logged_metrics: dict[str, float] = {}

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.logger is None:
            return
        metrics = {}
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            metrics["hparams/final_loss"] = float(loss)
        for source in self.sources:
            metrics.update({f"hparams/{k.rpartition('/')[2]}": float(v) for k, v in source.summary_metrics().items()})
        metrics["hparams/steps"] = float(trainer.global_step)
        self.logged_metrics = metrics
        trainer.logger.log_hyperparams(self.params, metrics=metrics, step=int(trainer.global_step))
