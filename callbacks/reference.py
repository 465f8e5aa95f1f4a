"""What a callback generates from: fixed reference clips of the training data and the stage's conditioning.

Text stages take captions; image-to-video stages the first frame of a reference clip; interpolation the first
and last. Clips are the first rows of the clip table, each read with its row index as sample seed, so every
evaluation of a run (and every run on the same table) sees the same clips.
"""

from __future__ import annotations

import torch

IMAGE_STAGES = ("image_to_video", "camera_lora")
PAIR_STAGES = ("interpolation",)


def reference_clips(datamodule, count: int) -> tuple[torch.Tensor, list[str], list[str]]:
    """The first `count` clips of the datamodule's dataset: videos (B, T, 3, H, W) in [-1, 1], captions, ids."""
    datamodule.setup("fit")
    dataset = datamodule.dataset
    if count < 1 or count > len(dataset):
        raise ValueError(f"asked for {count} reference clips, the training data has {len(dataset)}")
    items = [dataset[(index, index)] for index in range(count)]
    videos = torch.stack([item["video"] for item in items])
    return videos, [item["txt"] for item in items], [item["clip_id"] for item in items]


def needs_frames(stage) -> bool:
    return stage.hparams.stage["name"] in IMAGE_STAGES + PAIR_STAGES


def generation_inputs(stage, videos: torch.Tensor | None, prompts: list[str]) -> dict:
    """`generate` keyword arguments for this stage: prompts, plus conditioning frames where the stage needs them."""
    name = stage.hparams.stage["name"]
    if needs_frames(stage):
        if videos is None or len(videos) < len(prompts):
            raise ValueError(f"the {name} stage generates from frames: give at least {len(prompts)} reference clips")
        videos = videos[: len(prompts)].float()
        images = videos[:, 0] if name in IMAGE_STAGES else torch.stack([videos[:, 0], videos[:, -1]], dim=1)
        return {"prompts": list(prompts), "images": images}
    return {"prompts": list(prompts)}


def generate_batched(stage, prompts: list[str], videos: torch.Tensor | None, seed: int, batch_size: int,
                     **kwargs) -> torch.Tensor:
    """Generate in batches; batch k uses seed + k. Returns uint8 (B, T, 3, H, W) (the FVD and TensorBoard layout)."""
    outputs = []
    for k, start in enumerate(range(0, len(prompts), batch_size)):
        chunk = slice(start, start + batch_size)
        clips = videos[chunk] if videos is not None else None
        inputs = generation_inputs(stage, clips, prompts[chunk])
        outputs.append(stage.generate(**inputs, seed=seed + k, **kwargs).permute(0, 1, 4, 2, 3))
    return torch.cat(outputs)
