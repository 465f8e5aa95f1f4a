"""What a callback generates from: fixed reference clips of the training data and the stage's conditioning.

Text stages take captions; image-to-video stages the first frame of a reference clip; multi-view stages the
first view of a reference orbit and the orbit's cameras; interpolation the first and last frame. Clips are the
first rows of the training data, each read with its row index as sample seed, so every evaluation of a run
(and every run on the same data) sees the same clips.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

IMAGE_STAGES = ("image_to_video", "camera_lora", "multiview")
PAIR_STAGES = ("interpolation",)
CAMERA_STAGES = ("multiview",)
CAMERA_KEYS = ("azimuth_rad", "polar_rad")


@dataclass(frozen=True)
class ReferenceClips:
    """Videos (B, T, 3, H, W) in [-1, 1] with their captions and ids, and per-frame cameras (B, T) by name where
    the data has them (orbits)."""

    videos: torch.Tensor
    captions: list[str]
    clip_ids: list[str]
    cameras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def select(self, part: slice) -> ReferenceClips:
        return ReferenceClips(self.videos[part], self.captions[part], self.clip_ids[part],
                              {k: v[part] for k, v in self.cameras.items()})


def reference_clips(datamodule, count: int) -> ReferenceClips:
    """The first `count` clips of the datamodule's dataset."""
    datamodule.setup("fit")
    dataset = datamodule.dataset
    if count < 1 or count > len(dataset):
        raise ValueError(f"asked for {count} reference clips, the training data has {len(dataset)}")
    items = [dataset[(index, index)] for index in range(count)]
    cameras = {key: torch.stack([item[key] for item in items]) for key in CAMERA_KEYS if key in items[0]}
    return ReferenceClips(torch.stack([item["video"] for item in items]), [item["txt"] for item in items],
                          [item["clip_id"] for item in items], cameras)


def needs_frames(stage) -> bool:
    return stage.hparams.stage["name"] in IMAGE_STAGES + PAIR_STAGES


def generation_inputs(stage, references: ReferenceClips | None, prompts: list[str]) -> dict:
    """`generate` keyword arguments for this stage: prompts, plus conditioning frames (and cameras) where the
    stage needs them, taken from the first len(prompts) reference clips."""
    name = stage.hparams.stage["name"]
    if not needs_frames(stage):
        return {"prompts": list(prompts)}
    if references is None or len(references) < len(prompts):
        raise ValueError(f"the {name} stage generates from frames: give at least {len(prompts)} reference clips")
    videos = references.videos[: len(prompts)].float()
    images = videos[:, 0] if name in IMAGE_STAGES else torch.stack([videos[:, 0], videos[:, -1]], dim=1)
    inputs = {"prompts": list(prompts), "images": images}
    if name in CAMERA_STAGES:
        missing = [key for key in CAMERA_KEYS if key not in references.cameras]
        if missing:
            raise ValueError(f"the {name} stage generates at the reference orbits' cameras; the data has no {missing}")
        inputs.update({key: references.cameras[key][: len(prompts)] for key in CAMERA_KEYS})
    return inputs


def generate_batched(stage, prompts: list[str], references: ReferenceClips | None, seed: int, batch_size: int,
                     **kwargs) -> torch.Tensor:
    """Generate in batches; batch k uses seed + k. Returns uint8 (B, T, 3, H, W) (the FVD and TensorBoard layout)."""
    outputs = []
    for k, start in enumerate(range(0, len(prompts), batch_size)):
        chunk = slice(start, start + batch_size)
        clips = references.select(chunk) if references is not None else None
        inputs = generation_inputs(stage, clips, prompts[chunk])
        outputs.append(stage.generate(**inputs, seed=seed + k, **kwargs).permute(0, 1, 4, 2, 3))
    return torch.cat(outputs)
