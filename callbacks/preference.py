"""Preference sample collection: a fixed prompt list with one fixed seed per prompt, written as a study pack.

At every `every_n_steps`-th step and when training ends, prompt i is sampled alone with seed `seed + i` (so its
video depends on neither the other prompts nor the step), and each collection becomes one arm,
`<arm>@step<N>`: people then judge whether later weights really look better. From the second collection on,
`<run_dir>/study` is a pack (SPEC contract; a pack compares at least two arms). `videos` keeps the frames by
(arm, prompt id), so a task comparing runs can write one pack with the arms of several runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightning_svd.preference.pack import write_pack

from .periodic import EveryNSteps
from .reference import generate_batched, needs_frames, reference_clips


class PreferenceSamples(EveryNSteps):
    def __init__(self, run_dir: str | Path, prompts: list[str], arm: str, fps: int, every_n_steps: int,
                 seed: int = 0, steps: int | None = None, num_frames: int | None = None):
        super().__init__(every_n_steps, at_end=True)
        if not prompts:
            raise ValueError("preference sample collection needs a non-empty prompt list")
        self.root = Path(run_dir) / "study"
        self.prompts = [{"id": f"p{i:03d}", "text": text} for i, text in enumerate(prompts)]
        self.arm, self.fps, self.seed, self.steps, self.num_frames = arm, fps, seed, steps, num_frames
        self.arms: list[str] = []
        self.videos: dict[tuple[str, str], np.ndarray] = {}

    def run(self, trainer, stage) -> None:
        clips = reference_clips(trainer.datamodule, len(self.prompts)) if needs_frames(stage) else None
        arm = f"{self.arm}@step{trainer.global_step}"
        for i, prompt in enumerate(self.prompts):
            chosen = clips.select(slice(i, i + 1)) if clips is not None else None
            video = generate_batched(stage, [prompt["text"]], chosen, self.seed + i, 1,
                                     num_frames=self.num_frames, steps=self.steps)[0]
            self.videos[(arm, prompt["id"])] = video.permute(0, 2, 3, 1).numpy()
        self.arms.append(arm)
        if len(self.arms) >= 2:
            write_pack(self.root, self.prompts, self.videos, self.fps, arms=self.arms)

    def results(self) -> dict:
        return {"study_pack": str(self.root) if len(self.arms) >= 2 else None, "study_arms": self.arms}
