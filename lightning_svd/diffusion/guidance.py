"""Classifier-free guidance: each guider prepares the model batch and combines the model's outputs.

CFG (Ho & Salimans 2022; SVD eq. 5): D^w = w D(x; c) - (w - 1) D(x; u) = D_u + w (D_c - D_u). The
conditional and unconditional passes share one doubled batch [uncond, cond] along the row axis; `combine` also
sees the model inputs `prepare` made (their `num_frames` is the clip length being sampled).
"""

from collections.abc import Callable, Mapping
from typing import Any

import torch

from lightning_svd.diffusion.registry import Registry

GUIDERS = Registry("guider")

Cond = Mapping[str, Any]


@GUIDERS.register("none")
class NoGuidance:
    """The conditional model alone (no unconditional pass)."""

    def prepare(
        self, x: torch.Tensor, level: torch.Tensor, cond: Cond, uncond: Cond | None
    ) -> tuple[torch.Tensor, torch.Tensor, Cond]:
        return x, level, cond

    def combine(self, output: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        return output


@GUIDERS.register("cfg")
class VanillaCFG:
    """One guidance scale for every frame: x_u + scale (x_c - x_u)."""

    def __init__(self, scale: float):
        self.scale = scale

    def prepare(
        self, x: torch.Tensor, level: torch.Tensor, cond: Cond, uncond: Cond | None
    ) -> tuple[torch.Tensor, torch.Tensor, Cond]:
        return double_batch(x, level, cond, uncond)

    def combine(self, output: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        uncond_out, cond_out = output.chunk(2)
        return uncond_out + self.scale * (cond_out - uncond_out)


@GUIDERS.register("linear_frames")
class LinearFrameCFG:
    """SVD's image-to-video guider: frame t of T gets scale linspace(min_scale, max_scale, T)[t].

    T is the length of the clips being sampled (the model inputs' `num_frames`), so the ramp spans the frames
    generated whatever the model was trained on; `num_frames` is the fallback for models called without it.
    Released defaults: 1.0 -> 2.5 for 14 frames (svd), 1.5 -> 3.0 for 25 frames (svd_xt). The first frame,
    which the conditioning image pins down, needs little guidance; later frames need more.
    """

    def __init__(self, max_scale: float, num_frames: int | None = None, min_scale: float = 1.0):
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.num_frames = num_frames

    def frame_scales(self, num_frames: int | None = None) -> torch.Tensor:
        frames = num_frames or self.num_frames
        if not frames:
            raise ValueError("linear_frames guidance needs the clip length: num_frames in the model inputs or guider")
        return torch.linspace(self.min_scale, self.max_scale, frames)

    def prepare(
        self, x: torch.Tensor, level: torch.Tensor, cond: Cond, uncond: Cond | None
    ) -> tuple[torch.Tensor, torch.Tensor, Cond]:
        return double_batch(x, level, cond, uncond)

    def combine(self, output: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        uncond_out, cond_out = output.chunk(2)
        scales = self.frame_scales((cond or {}).get("num_frames")).to(output.device, output.dtype)
        frames, rows = len(scales), uncond_out.shape[0]
        if rows % frames:
            raise ValueError(f"{rows} frame rows is not a whole number of {frames}-frame clips")
        clip_shape = (rows // frames, frames) + tuple(uncond_out.shape[1:])
        scales = scales.reshape(1, frames, *([1] * (uncond_out.ndim - 1)))
        uncond_clips = uncond_out.reshape(clip_shape)
        guided = uncond_clips + scales * (cond_out.reshape(clip_shape) - uncond_clips)
        return guided.reshape(uncond_out.shape)


def double_batch(
    x: torch.Tensor, level: torch.Tensor, cond: Cond, uncond: Cond | None
) -> tuple[torch.Tensor, torch.Tensor, Cond]:
    """Stack [uncond, cond]: tensors are concatenated on dim 0, other entries (num_frames) must match."""
    if uncond is None:
        raise ValueError("classifier-free guidance needs an unconditional input; pass uncond or use guider 'none'")
    if set(cond) != set(uncond):
        raise ValueError(f"cond and uncond need the same keys, got {sorted(cond)} and {sorted(uncond)}")
    doubled: dict[str, Any] = {}
    for key, value in cond.items():
        if torch.is_tensor(value):
            doubled[key] = torch.cat([uncond[key], value])
        elif value == uncond[key]:
            doubled[key] = value
        else:
            raise ValueError(f"cond and uncond disagree on the non-tensor entry {key!r}: {value} vs {uncond[key]}")
    level = torch.as_tensor(level, device=x.device)
    level = level.expand(x.shape[0]) if level.ndim == 0 else level
    return torch.cat([x, x]), torch.cat([level, level]), doubled


def guided(
    model: Callable[..., torch.Tensor], guider: Any, cond: Cond | None = None, uncond: Cond | None = None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Bind conditioning and guidance to `model(x, level, cond)`, giving the `denoise(x, level)` samplers take."""
    cond = cond or {}

    def denoise(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        model_x, model_level, model_cond = guider.prepare(x, level, cond, uncond)
        return guider.combine(model(model_x, model_level, model_cond), model_cond)

    return denoise
