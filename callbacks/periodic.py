"""The schedule the generating callbacks share: every N optimizer steps, and once more when training ends."""

from __future__ import annotations

from abc import ABC, abstractmethod

from lightning.pytorch.callbacks import Callback


class EveryNSteps(Callback, ABC):
    """Calls `self.run(trainer, stage)` on global rank zero after every `every_n_steps`-th optimizer step and,
    with `at_end`, after the last step if that one was not already run (so short runs still leave a result)."""

    def __init__(self, every_n_steps: int, at_end: bool):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive integer, got {every_n_steps}")
        self.every_n_steps, self.at_end = every_n_steps, at_end
        self.last_run_step: int | None = None

    @abstractmethod
    def run(self, trainer, stage) -> None:
        """The callback's work at a scheduled step."""

    def _maybe_run(self, trainer, stage) -> None:
        step = trainer.global_step
        if trainer.is_global_zero and step != self.last_run_step:
            self.last_run_step = step
            self.run(trainer, stage)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > 0 and trainer.global_step % self.every_n_steps == 0:
            self._maybe_run(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.at_end and trainer.global_step > 0:
            self._maybe_run(trainer, pl_module)
