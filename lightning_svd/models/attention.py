"""Attention and feed-forward layers of the VideoLDM UNet, with the released module names.

Every attention runs through `torch.nn.functional.scaled_dot_product_attention`. Temporal attention sees one
sequence per pixel (batch x height x width sequences of length T); kernels have grid limits on the batch, so
long batches are split into chunks of at most `max_batch_heads` (sequence, head) pairs.
"""

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_MAX_BATCH_HEADS = 32768


def multihead_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, max_batch_heads: int = DEFAULT_MAX_BATCH_HEADS
) -> torch.Tensor:
    """Softmax attention of (N, Lq, heads*d) queries over (N, Lk, heads*d) keys/values, chunked over N."""
    rows_per_call = max(1, max_batch_heads // heads)

    def split_heads(t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (heads, -1)).transpose(1, 2)

    def attend(qc: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(split_heads(qc), split_heads(kc), split_heads(vc))
        return out.transpose(1, 2).flatten(2)

    if q.shape[0] <= rows_per_call:
        return attend(q, k, v)
    chunks = zip(q.split(rows_per_call), k.split(rows_per_call), v.split(rows_per_call))
    return torch.cat([attend(qc, kc, vc) for qc, kc, vc in chunks])


class Attention(nn.Module):
    """Multi-head attention; self-attention when no context is given (`to_q/k/v` without bias, `to_out.0`)."""

    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim: int | None = None, dropout=0.0):
        super().__init__()
        inner_dim = heads * dim_head
        self.heads = heads
        self.max_batch_heads = DEFAULT_MAX_BATCH_HEADS
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        out = multihead_attention(
            self.to_q(x), self.to_k(context), self.to_v(context), self.heads, self.max_batch_heads
        )
        return self.to_out(out)


class GEGLU(nn.Module):
    """Gated GELU projection: one linear layer gives value and gate halves."""

    def __init__(self, dim: int, inner_dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner_dim * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward with a 4x inner width (`net.0.proj`, `net.2`)."""

    def __init__(self, dim: int, dropout: float = 0.0, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(dropout), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SpatialTransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to the context, and feed-forward over the pixels of a frame."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim_head, context_dim=context_dim, dropout=dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class TemporalTransformerBlock(nn.Module):
    """The VideoLDM temporal block: (optional) feed-forward, self-attention over frames, cross-attention, FF.

    The cross-attention context is the same for every pixel and frame of a clip (the first frame's context),
    so it is computed as one attention of all (pixel, frame) queries of a clip over that context: identical
    to attending per pixel sequence, without repeating the context height x width times.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, extra_ff: bool, dropout: float = 0.0):
        super().__init__()
        if extra_ff:
            self.norm_in = nn.LayerNorm(dim)
            self.ff_in = FeedForward(dim, dropout)
        self.extra_ff = extra_ff
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim_head, context_dim=context_dim, dropout=dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, dropout)

    def forward(self, x: torch.Tensor, num_frames: int, clip_context: torch.Tensor) -> torch.Tensor:
        """x: (B*T, S, C) pixel tokens per frame; clip_context: (B, L, D). Returns (B*T, S, C)."""
        frames_batch, pixels, channels = x.shape
        batch = frames_batch // num_frames
        h = x.unflatten(0, (batch, num_frames)).transpose(1, 2).reshape(batch * pixels, num_frames, channels)
        if self.extra_ff:
            h = self.ff_in(self.norm_in(h)) + h
        h = self.attn1(self.norm1(h)) + h
        cross = self.attn2(self.norm2(h).reshape(batch, pixels * num_frames, channels), clip_context)
        h = cross.reshape(batch * pixels, num_frames, channels) + h
        h = self.ff(self.norm3(h)) + h
        return h.unflatten(0, (batch, pixels)).transpose(1, 2).reshape(frames_batch, pixels, channels)
