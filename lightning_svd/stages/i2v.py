"""Image-to-video: the clean first frame conditions through CLIP (context) and through its noise-augmented
latent concatenated to every frame; the vector is fps_id, motion_bucket_id and cond_aug (paper §4.3, D.4).
The unconditional branch zeroes the image embedding and the concat latent.

A precomputed batch (shards) carries the conditioning frame as `first_frame` and its CLIP embedding as
`image_embedding`; the noise-augmented latent is still encoded per step, as its noise is added to the pixels.
"""

from collections.abc import Mapping

import torch

from lightning_svd.models.conditioners import ConditioningInput, NoiseAugmentedFrameEncoder
from lightning_svd.stages.base import DiffusionStage
from lightning_svd.stages.components import build_image_encoder


class ImageToVideoStage(DiffusionStage):
    generates_from = "image"

    def conditioning_inputs(self, cfg: Mapping) -> list[ConditioningInput]:
        image = cfg["image"]
        drop = float(image["drop_rate"])
        clip = ConditioningInput(build_image_encoder(cfg["open_clip"]), ["cond_frames_without_noise"],
                                 drop_rate=drop, unconditional="zeros", precomputed_key="image_embedding")
        augment = cfg["cond_aug"]
        frame = ConditioningInput(
            NoiseAugmentedFrameEncoder(self.autoencoder, float(augment["log_sigma_mean"]),
                                       float(augment["log_sigma_std"])),
            ["cond_frames"], drop_rate=drop, unconditional="zeros", optional_keys=["cond_aug"],
        )
        return [clip, frame, *self.micro_conditioning(cfg)]

    def extra_input_channels(self) -> int:
        return self.autoencoder.latent_channels

    def prepare_batch(self, batch: dict, generator) -> dict:
        first = batch["first_frame"] if "first_frame" in batch else batch["video"][:, 0]
        batch["cond_frames"] = first
        batch["cond_frames_without_noise"] = first
        return batch

    def sampling_batch(self, prompts, images, count, num_frames, fps, motion_bucket_id) -> dict:
        if images is None or images.ndim != 4:
            raise ValueError("image-to-video generate needs images=(B, 3, H, W) in [-1, 1] (the first frames)")
        images = images.to(self.device, torch.float32)
        cond_aug = float(self.hparams.stage["cond_aug"]["sampling"])
        return {"cond_frames": images, "cond_frames_without_noise": images,
                "fps_id": torch.full((count,), fps - 1.0, device=self.device),
                "motion_bucket_id": torch.full((count,), float(motion_bucket_id), device=self.device),
                "cond_aug": torch.full((count,), cond_aug, device=self.device)}
