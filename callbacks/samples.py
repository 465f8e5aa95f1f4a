"""Sample logging: videos from the EMA weights into TensorBoard (as frame strips) and as MP4s in the run dir.

TensorBoard's `add_video` writes nothing when moviepy is missing (it only warns), so each video is logged as
frames side by side, one row per video, all in one image per step (`samples/frames`). The MP4s go to
`<run_dir>/samples/step_XXXXXX/sample_NN.mp4`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_svd.video import write_video

from .periodic import EveryNSteps
from .reference import generate_batched, reference_clips


def frame_grid(videos: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, 3, H, W) -> uint8 (3, B * H, T * W): row b holds video b's frames left to right."""
    return videos.permute(2, 0, 3, 1, 4).flatten(3, 4).flatten(1, 2)


class SampleLogging(EveryNSteps):
    def __init__(self, run_dir: str | Path, every_n_steps: int, prompts: list[str], count: int, fps: int,
                 seed: int = 0, steps: int | None = None, num_frames: int | None = None, write_mp4: bool = True,
                 at_end: bool = False):
        super().__init__(every_n_steps, at_end)
        self.root = Path(run_dir) / "samples"
        self.prompts, self.count, self.fps, self.seed = list(prompts), count, fps, seed
        self.steps, self.num_frames, self.write_mp4 = steps, num_frames, write_mp4
        self.written: list[str] = []

    def run(self, trainer, stage) -> None:
        clips, captions, _ = reference_clips(trainer.datamodule, self.count)
        prompts = (self.prompts or captions)[: self.count]
        videos = generate_batched(stage, prompts, clips, self.seed, len(prompts), num_frames=self.num_frames,
                                  steps=self.steps)
        step = int(trainer.global_step)
        writer = getattr(trainer.logger, "experiment", None)
        if writer is not None and hasattr(writer, "add_image"):
            writer.add_image("samples/frames", frame_grid(videos), global_step=step, dataformats="CHW")
            writer.add_text("samples/prompts", "\n\n".join(f"{i}: {p}" for i, p in enumerate(prompts)), step)
        if self.write_mp4:
            folder = self.root / f"step_{step:06d}"
            folder.mkdir(parents=True, exist_ok=True)
            for index, video in enumerate(videos.permute(0, 1, 3, 4, 2).numpy()):
                path = write_video(folder / f"sample_{index:02d}.mp4", video, self.fps)
                self.written.append(str(path))

    def results(self) -> dict:
        return {"sample_videos": self.written}
