"""UNet building blocks: spatial ResBlocks and transformers with their VideoLDM temporal partners.

Every layer placed in the UNet takes `(x, inputs)` where `inputs` is one `BlockInputs` bundle, so a block is
a plain sequence of layers: no type dispatch. Module and parameter names follow the released (sgm) layout.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lightning_svd.models.attention import SpatialTransformerBlock, TemporalTransformerBlock
from lightning_svd.models.embeddings import timestep_embedding


@dataclass
class BlockInputs:
    """What every UNet layer may need besides its feature map.

    emb: (B*T, E) time (+ vector) embedding; context: (B*T, L, D) cross-attention tokens per frame;
    clip_context: (B, L, D) each clip's first-frame context (the temporal cross-attention context);
    image_only: (B*T,) bool, True where a frame takes the pure spatial path; run_temporal: False when every
    frame is image-only, so temporal branches (whose blend weight would be 0) are skipped.
    """

    emb: torch.Tensor
    context: torch.Tensor
    clip_context: torch.Tensor
    num_frames: int
    image_only: torch.Tensor
    run_temporal: bool


def zero_initialised(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters so the residual branch it closes starts as the identity (as released)."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class AlphaBlender(nn.Module):
    """Blend `alpha * spatial + (1 - alpha) * temporal` with `alpha = sigmoid(mix_factor)`; image-only frames
    get alpha = 1 (the `learned_with_images` strategy of the release)."""

    def __init__(self, merge_factor: float):
        super().__init__()
        self.mix_factor = nn.Parameter(torch.tensor([merge_factor]))

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor, image_only: torch.Tensor) -> torch.Tensor:
        alpha = torch.where(image_only, torch.ones_like(self.mix_factor), torch.sigmoid(self.mix_factor))
        alpha = alpha.to(spatial.dtype).view(-1, *([1] * (spatial.ndim - 1)))
        return alpha * spatial + (1.0 - alpha) * temporal


class TimeConv(nn.Conv3d):
    """A (k, 1, 1) convolution over (B, C, T, H, W) clips: the released Conv3d weights, run as a (k, 1) 2D
    convolution over (B, C, T, H*W), which gives the same result with much faster kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_frames: int):
        super().__init__(in_channels, out_channels, (kernel_frames, 1, 1), padding=(kernel_frames // 2, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x.flatten(3), self.weight.squeeze(-1), self.bias, padding=(self.padding[0], 0))
        return out.unflatten(3, x.shape[3:])


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, add the embedding, GroupNorm-SiLU-dropout-conv (zero-initialised), plus a skip.

    With `kernel_frames=None` it is the spatial block (3x3 convs on (N, C, H, W), embedding (N, E)); with
    `kernel_frames=k` the temporal block ((k,1,1) convs on (B, C, T, H, W) clips, embedding (B, T, E)).
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        emb_channels: int,
        eps: float,
        groups: int,
        dropout: float,
        kernel_frames: int | None = None,
    ):
        super().__init__()

        def conv(inputs: int, outputs: int, size: int) -> nn.Module:
            if kernel_frames is None:
                return nn.Conv2d(inputs, outputs, size, padding=size // 2)
            return TimeConv(inputs, outputs, kernel_frames if size > 1 else 1)

        self.in_layers = nn.Sequential(
            nn.GroupNorm(groups, channels, eps=eps), nn.SiLU(), conv(channels, out_channels, 3)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            nn.GroupNorm(groups, out_channels, eps=eps),
            nn.SiLU(),
            nn.Dropout(dropout),
            zero_initialised(conv(out_channels, out_channels, 3)),
        )
        self.skip_connection = nn.Identity() if channels == out_channels else conv(channels, out_channels, 1)

    def residual(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb).movedim(-1, 1)
        h = h + emb_out.reshape(*emb_out.shape, *([1] * (h.ndim - emb_out.ndim)))
        return self.skip_connection(x) + self.out_layers(h)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.residual(x, emb)


class VideoResBlock(ResBlock):
    """Spatial ResBlock on (B*T, C, H, W), then (if temporal) a (t,1,1) ResBlock over each clip, blended."""

    def __init__(
        self,
        channels: int,
        out_channels: int,
        emb_channels: int,
        eps: float,
        groups: int,
        dropout: float,
        temporal: bool,
        temporal_kernel_size: int,
        merge_factor: float,
    ):
        super().__init__(channels, out_channels, emb_channels, eps, groups, dropout)
        self.temporal = temporal
        if temporal:
            self.time_stack = ResBlock(
                out_channels, out_channels, emb_channels, eps, groups, dropout, kernel_frames=temporal_kernel_size
            )
            self.time_mixer = AlphaBlender(merge_factor)

    def forward(self, x: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        h = self.residual(x, inputs.emb)
        if not (self.temporal and inputs.run_temporal):
            return h
        clips = h.unflatten(0, (-1, inputs.num_frames))
        temporal = self.time_stack(clips.transpose(1, 2), inputs.emb.unflatten(0, (-1, inputs.num_frames)))
        temporal = temporal.transpose(1, 2).flatten(0, 1)
        return self.time_mixer(h, temporal, inputs.image_only)


class VideoTransformer(nn.Module):
    """Spatial transformer over each frame's pixels; after each of its blocks (if temporal) a temporal block
    over each pixel's frames, fed the frame-index embedding and blended with the spatial result."""

    def __init__(
        self,
        channels: int,
        heads: int,
        depth: int,
        context_dim: int,
        linear_projection: bool,
        eps: float,
        groups: int,
        dropout: float,
        temporal: bool,
        extra_ff_mix_layer: bool,
        merge_factor: float,
    ):
        super().__init__()
        dim_head = channels // heads
        self.linear_projection = linear_projection
        self.norm = nn.GroupNorm(groups, channels, eps=eps)
        if linear_projection:
            self.proj_in = nn.Linear(channels, channels)
        else:
            self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            [SpatialTransformerBlock(channels, heads, dim_head, context_dim, dropout) for _ in range(depth)]
        )
        if linear_projection:
            self.proj_out = zero_initialised(nn.Linear(channels, channels))
        else:
            self.proj_out = zero_initialised(nn.Conv2d(channels, channels, 1))
        self.temporal = temporal
        if temporal:
            self.time_stack = nn.ModuleList(
                [
                    TemporalTransformerBlock(channels, heads, dim_head, context_dim, extra_ff_mix_layer, dropout)
                    for _ in range(depth)
                ]
            )
            self.time_pos_embed = nn.Sequential(
                nn.Linear(channels, channels * 4), nn.SiLU(), nn.Linear(channels * 4, channels)
            )
            self.time_mixer = AlphaBlender(merge_factor)

    def frame_position_embedding(self, num_frames: int, like: torch.Tensor) -> torch.Tensor:
        """(T, C) embedding of the frame index 0..T-1 (sinusoid, then the learned MLP)."""
        frames = torch.arange(num_frames, device=like.device)
        return self.time_pos_embed(timestep_embedding(frames, like.shape[-1]).to(like.dtype))

    def forward(self, x: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        frames_batch, channels, height, width = x.shape
        h = self.norm(x)
        if self.linear_projection:
            h = self.proj_in(h.permute(0, 2, 3, 1).reshape(frames_batch, height * width, channels))
        else:
            h = self.proj_in(h).permute(0, 2, 3, 1).reshape(frames_batch, height * width, channels)
        run_temporal = self.temporal and inputs.run_temporal
        if run_temporal:
            frame_position = self.frame_position_embedding(inputs.num_frames, h)[:, None, :]
        for depth, block in enumerate(self.transformer_blocks):
            h = block(h, inputs.context)
            if run_temporal:
                mixed = (h.unflatten(0, (-1, inputs.num_frames)) + frame_position).flatten(0, 1)
                mixed = self.time_stack[depth](mixed, inputs.num_frames, inputs.clip_context)
                h = self.time_mixer(h, mixed, inputs.image_only)
        if self.linear_projection:
            h = self.proj_out(h).reshape(frames_batch, height, width, channels).permute(0, 3, 1, 2)
        else:
            h = self.proj_out(h.reshape(frames_batch, height, width, channels).permute(0, 3, 1, 2))
        return h.contiguous() + x  # a permuted operand would hand channels-last strides to every later layer


class InputConv(nn.Conv2d):
    """The first 3x3 convolution from the input latents to the model width."""

    def forward(self, x: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        return super().forward(x)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution (`op`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling, then a 3x3 convolution (`conv`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNetBlock(nn.ModuleList):
    """A sequence of `(x, inputs)` layers; with gradient checkpointing each layer recomputes in backward."""

    gradient_checkpointing = False

    def forward(self, x: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        for layer in self:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, inputs, use_reentrant=False)
            else:
                x = layer(x, inputs)
        return x
