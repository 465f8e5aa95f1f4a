"""Sample logging: videos from the EMA weights into TensorBoard and as MP4s in the run dir.

TensorBoard's `add_video` writes nothing when moviepy is missing (it only warns), so this callback encodes the
animation itself: every step logs `samples/video`, an animated GIF (TensorBoard's image dashboard plays it) with
the videos stacked top to bottom, and `samples/frames`, the same frames side by side as one still image. The
MP4s go to `<run_dir>/samples/step_XXXXXX/sample_NN.mp4`.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary

from lightning_svd.video import write_video

from .periodic import EveryNSteps
from .reference import generate_batched, reference_clips


def frame_grid(videos: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, 3, H, W) -> uint8 (3, B * H, T * W): row b holds video b's frames left to right."""
    return videos.permute(2, 0, 3, 1, 4).flatten(3, 4).flatten(1, 2)


def animated_gif(videos: torch.Tensor, fps: float) -> bytes:
    """uint8 (B, T, 3, H, W) -> a looping GIF of T frames, each the B videos' frames stacked top to bottom."""
    frames = videos.permute(1, 0, 3, 4, 2).flatten(1, 2).numpy()
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps),
                   loop=0, optimize=False)
    return buffer.getvalue()


def video_summary(tag: str, videos: torch.Tensor, fps: float) -> Summary:
    """An image summary holding the animated GIF, as `add_video` would write it with moviepy."""
    _, _, channels, height, width = videos.shape
    image = Summary.Image(height=videos.shape[0] * height, width=width, colorspace=channels,
                          encoded_image_string=animated_gif(videos, fps))
    return Summary(value=[Summary.Value(tag=tag, image=image)])


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
        references = reference_clips(trainer.datamodule, self.count)
        prompts = (self.prompts or references.captions)[: self.count]
        videos = generate_batched(stage, prompts, references, self.seed, len(prompts), num_frames=self.num_frames,
                                  steps=self.steps)
        step = int(trainer.global_step)
        writer = getattr(trainer.logger, "experiment", None)
        if writer is not None and hasattr(writer, "add_image"):
            # SummaryWriter has no public call for a ready-made summary; its file writer is what add_image uses.
            writer._get_file_writer().add_summary(video_summary("samples/video", videos, self.fps), step)
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
