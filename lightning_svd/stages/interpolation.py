"""Frame interpolation (paper §4.4, D.5): of T = 5 frames the first and last are given, the 3 between predicted.

The UNet input is [noisy latents | conditioning sequence | mask]: the conditioning sequence is
{z_s, z_m, z_m, z_m, z_e} with z_s, z_e the noise-augmented latents of the given frames (noise in latent
space, its level fed as cond_aug) and z_m a learned mask embedding; the mask channel is 1 on given frames and
0 elsewhere. The context is the CLIP image embedding of the first and last frame as a 2-token sequence.
The loss covers all T frames (the paper does not say otherwise).
"""

from collections.abc import Mapping

import torch
from torch import nn

from lightning_svd.models.conditioners import CLIPImageEmbedder, ConditioningInput, repeat_per_frame
from lightning_svd.stages.base import DiffusionStage
from lightning_svd.stages.components import build_image_encoder


class FramePairEmbedder(nn.Module):
    """(B, 2, 3, H, W) first/last frames -> (B*T, 2, D): one CLIP image token per given frame."""

    def __init__(self, image_encoder: CLIPImageEmbedder):
        super().__init__()
        self.image_encoder = image_encoder
        self.embed_dim = image_encoder.embed_dim

    def forward(self, pairs: torch.Tensor, num_frames: int = 1) -> torch.Tensor:
        tokens = self.image_encoder(pairs.flatten(0, 1)).unflatten(0, (pairs.shape[0], 2)).flatten(1, 2)
        return repeat_per_frame(tokens, num_frames)


class MaskEmbedding(nn.Module):
    """The learned latent z_m (C, h, w) standing in for each frame to predict."""

    def __init__(self, channels: int, height: int, width: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(channels, height, width))


class InterpolationStage(DiffusionStage):
    generates_from = "first_and_last_frames"
    trains_from_precomputed = False  # the given frames are encoded with noise per step

    def conditioning_inputs(self, cfg: Mapping) -> list[ConditioningInput]:
        pair = ConditioningInput(FramePairEmbedder(build_image_encoder(cfg["open_clip"])), ["cond_pair"],
                                 drop_rate=float(cfg["image"]["drop_rate"]), unconditional="zeros")
        return [pair, *self.micro_conditioning(cfg)]

    def extra_input_channels(self) -> int:
        return self.autoencoder.latent_channels + 1

    def build_extras(self, cfg: Mapping) -> None:
        if self.num_frames < 3:
            raise ValueError(f"frame interpolation needs at least 3 frames (2 given), got {self.num_frames}")
        factor = self.autoencoder.downsampling_factor
        self.mask_embedding = MaskEmbedding(
            self.autoencoder.latent_channels, int(cfg["height"]) // factor, int(cfg["width"]) // factor
        )

    def ema_prefixes(self) -> tuple[str, ...]:
        return ("unet.", "mask_embedding.")

    def sample_cond_aug(self, count: int, generator: torch.Generator) -> torch.Tensor:
        augment = self.hparams.stage["cond_aug"]
        normal = torch.randn(count, generator=generator, device=generator.device).to(self.device)
        return torch.exp(float(augment["log_sigma_mean"]) + float(augment["log_sigma_std"]) * normal)

    def with_pair(self, batch: dict, pair: torch.Tensor, cond_aug: torch.Tensor) -> dict:
        batch["cond_pair"] = pair
        batch["cond_aug"] = cond_aug
        batch["cond_latents"] = self.encode_frames(pair)
        return batch

    def prepare_batch(self, batch: dict, generator) -> dict:
        video = batch["video"]
        return self.with_pair(batch, video[:, [0, -1]], self.sample_cond_aug(video.shape[0], generator))

    def sampling_batch(self, prompts, images, count, num_frames, fps, motion_bucket_id) -> dict:
        if images is None or images.ndim != 5 or images.shape[1] != 2:
            raise ValueError("interpolation generate needs images=(B, 2, 3, H, W): the first and last frames")
        cond_aug = torch.full((count,), float(self.hparams.stage["cond_aug"]["sampling"]), device=self.device)
        batch = {"fps_id": torch.full((count,), fps - 1.0, device=self.device),
                 "motion_bucket_id": torch.full((count,), float(motion_bucket_id), device=self.device)}
        return self.with_pair(batch, images.to(self.device, torch.float32), cond_aug)

    def network_condition(self, cond: dict, batch: dict, num_frames: int, generator) -> dict:
        network = super().network_condition(cond, batch, num_frames, generator)
        network["concat"] = self.conditioning_sequence(batch, num_frames, generator)
        return network

    def conditioning_sequence(self, batch: dict, num_frames: int, generator) -> torch.Tensor:
        """[z_s + aug n, z_m, ..., z_m, z_e + aug n] with the mask channel, (B*T, C + 1, h, w)."""
        given = batch["cond_latents"].unflatten(0, (-1, 2))
        clips = given.shape[0]
        noise = torch.randn(given.shape, generator=generator, device=generator.device).to(given)
        given = given + batch["cond_aug"].view(-1, 1, 1, 1, 1).to(given) * noise
        mask_latent = self.mask_embedding.embedding.to(given.dtype)
        sequence = mask_latent.expand(clips, num_frames, *mask_latent.shape).clone()
        sequence[:, 0], sequence[:, -1] = given[:, 0], given[:, 1]
        mask = torch.zeros(clips, num_frames, 1, *mask_latent.shape[1:], device=given.device, dtype=given.dtype)
        mask[:, 0], mask[:, -1] = 1.0, 1.0
        return torch.cat([sequence, mask], dim=2).flatten(0, 1)
