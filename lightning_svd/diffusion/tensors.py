"""Shape helpers for the (B*T, C, H, W) frame layout, where the T frames of each clip are contiguous."""

import torch


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape one value per leading-dim row to (N, 1, 1, ...) so it broadcasts against `like`; values given per
    row and channel, (N, C), become (N, C, 1, ...)."""
    if values.ndim == 2:
        return values.to(like.dtype).reshape(*values.shape, *([1] * (like.ndim - 2)))
    return values.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def expand_to_frames(values: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Spread a scalar, one value per clip (B,) or one per frame (B*T,) to one value per frame row."""
    values = values.reshape(-1)
    if values.numel() == 1:
        return values.expand(num_rows)
    if num_rows % values.numel():
        raise ValueError(
            f"got {values.numel()} noise levels for {num_rows} frame rows; pass one per clip or one per frame"
        )
    return values.repeat_interleave(num_rows // values.numel())
