"""Tiny stand-ins for the evaluation networks and inputs, made by the tests themselves (nothing is downloaded)."""

import warnings

import torch
import torch.nn.functional as F
from torch import nn


class TinyI3D(nn.Module):
    """Same call as the I3D torchscript port: (B, 3, T, H, W) uint8, rescale / resize / return_features flags.

    Features are per-channel means over time in two halves plus a fixed projection, so a wrong layout or a
    missing flag changes them in a way the tests can see.
    """

    def __init__(self):
        super().__init__()
        self.project = nn.Linear(6, 4)
        with torch.no_grad():
            self.project.weight.copy_(torch.linspace(-1.0, 1.0, 24).reshape(4, 6))
            self.project.bias.zero_()

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.float()
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            b, c, t, h, w = x.shape
            frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
            frames = F.interpolate(frames, size=(8, 8), mode="bilinear", align_corners=False)
            x = frames.reshape(b, t, c, 8, 8).permute(0, 2, 1, 3, 4)
        half = x.shape[2] // 2
        pooled = torch.cat([x[:, :, :half].mean(dim=(2, 3, 4)), x[:, :, half:].mean(dim=(2, 3, 4))], dim=1)
        features = torch.cat([pooled, self.project(pooled)], dim=1)
        if return_features:
            return features
        return features.softmax(dim=1)


def save_tiny_i3d(path, module: nn.Module | None = None):
    """Script and save a TinyI3D the way the real port is shipped (torch.jit.save)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module or TinyI3D()), str(path))
    return path


def random_videos(count: int, frames: int = 6, size: int = 16, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    """uint8 (B, T, 3, H, W): smooth random patterns that move over time, plus an optional brightness shift."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(count, 1, 3, size // 4, size // 4, generator=generator)
    motion = torch.rand(count, frames, 3, 1, 1, generator=generator)
    small = (base + 0.5 * motion).flatten(0, 1)
    videos = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    videos = videos.unflatten(0, (count, frames)) / 1.5 + shift
    return (videos.clamp(0, 1) * 255).round().to(torch.uint8)
