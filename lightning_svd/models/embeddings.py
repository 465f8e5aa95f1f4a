"""Sinusoidal embeddings shared by the UNet time embedding, frame-index embedding and micro-conditioning."""

import math

import torch


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Embed a 1-D tensor of scalars as `[cos(t f), sin(t f)]` with `dim/2` log-spaced frequencies.

    This is the layout the released SVD weights were trained with (cos first), computed in float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding
