"""Multi-view generation (SVD-MV, paper §4.5, D.6): an image-to-video stage whose clip is an object's orbit.

The conditioning image is the orbit's first view (CLIP context and noise-augmented concat latent, as in
image-to-video). The camera of every frame conditions through the vector: sinusoidal embeddings of its polar
angle and of its azimuth relative to the conditioning view, per frame (the paper embeds the elevation and
concatenates it to the UNet's vector condition; per-frame polar and azimuth follow SV3D's layout).

The vector keeps the image-to-video layout first (fps_id, motion_bucket_id, cond_aug; an orbit has no frame
rate or motion, so fps_id and motion_bucket_id are held at `multiview.fps_id` / `multiview.motion_bucket_id`)
and appends the camera: `init_from` an image-to-video checkpoint then copies the vector weights in place and
starts the camera columns at zero, so training begins from the image-to-video model with the camera switched off.
"""

import math
from collections.abc import Mapping

import torch

from lightning_svd.models.conditioners import ConditioningInput, MicroConditioningEmbedder
from lightning_svd.stages.i2v import ImageToVideoStage

CAMERA_KEYS = ("polar_rad", "azimuth_rad")


class MultiviewStage(ImageToVideoStage):
    trains_from_precomputed = False  # orbits come from their own DataModule, not a clip table

    def conditioning_inputs(self, cfg: Mapping) -> list[ConditioningInput]:
        camera = MicroConditioningEmbedder(CAMERA_KEYS, int(cfg["multiview"]["camera_dim"]))
        return [*super().conditioning_inputs(cfg), ConditioningInput(camera, list(CAMERA_KEYS))]

    def camera_batch(self, image: torch.Tensor, polar_rad, azimuth_rad) -> dict:
        """The conditioning image and per-frame cameras (B, T), azimuths relative to the first view."""
        count = image.shape[0]
        polar = torch.as_tensor(polar_rad, dtype=torch.float32, device=self.device)
        azimuth = torch.as_tensor(azimuth_rad, dtype=torch.float32, device=self.device)
        if polar.shape != azimuth.shape or polar.ndim != 2 or polar.shape[0] != count:
            raise ValueError(f"polar_rad and azimuth_rad must both be (B, T) with B = {count} images; got "
                             f"{tuple(polar.shape)} and {tuple(azimuth.shape)}")
        settings = self.hparams.stage["multiview"]
        return {
            "cond_frames": image, "cond_frames_without_noise": image,
            "polar_rad": polar, "azimuth_rad": torch.remainder(azimuth - azimuth[:, :1], 2 * math.pi),
            "fps_id": torch.full((count,), float(settings["fps_id"]), device=self.device),
            "motion_bucket_id": torch.full((count,), float(settings["motion_bucket_id"]), device=self.device),
        }

    def prepare_batch(self, batch: dict, generator) -> dict:
        missing = [k for k in ("image", *CAMERA_KEYS) if k not in batch]
        if missing:
            raise KeyError(f"a multiview batch needs {missing} besides the video (see data_modules/multiview.py)")
        batch.update(self.camera_batch(batch["image"], batch["polar_rad"], batch["azimuth_rad"]))
        return batch

    @torch.no_grad()
    def generate(self, prompts=None, images: torch.Tensor | None = None, seed: int = 0, num_frames: int | None = None,
                 steps: int | None = None, fps: float = 7.0, motion_bucket_id: int = 127, polar_rad=None,
                 azimuth_rad=None) -> torch.Tensor:
        """Sample orbits as uint8 (B, T, H, W, 3) from conditioning images (B, 3, H, W) in [-1, 1].

        polar_rad / azimuth_rad: (B, T) cameras of the frames to generate (azimuths relative to the image's
        view, or absolute with the image's view first). Default: T views evenly around the orbit at the
        polar angle `multiview.sampling_polar_deg`. `fps` and `motion_bucket_id` (the common signature) do not
        apply: orbits use the stage's fixed `multiview.fps_id` and `multiview.motion_bucket_id`.
        """
        if images is None or images.ndim != 4:
            raise ValueError("multiview generate needs images=(B, 3, H, W) in [-1, 1] (the conditioning views)")
        num_frames = num_frames or self.num_frames
        count = images.shape[0]
        if azimuth_rad is None:
            azimuth_rad = (torch.arange(num_frames) * 2 * math.pi / num_frames).expand(count, -1)
        if polar_rad is None:
            polar = math.radians(float(self.hparams.stage["multiview"]["sampling_polar_deg"]))
            polar_rad = torch.full((count, num_frames), polar)
        self._sampling_cameras = (polar_rad, azimuth_rad)
        try:
            return super().generate(prompts, images, seed, num_frames, steps, fps, motion_bucket_id)
        finally:
            del self._sampling_cameras

    def sampling_batch(self, prompts, images, count, num_frames, fps, motion_bucket_id) -> dict:
        images = images.to(self.device, torch.float32)
        cond_aug = float(self.hparams.stage["cond_aug"]["sampling"])
        polar_rad, azimuth_rad = self._sampling_cameras
        return {**self.camera_batch(images, polar_rad, azimuth_rad),
                "cond_aug": torch.full((count,), cond_aug, device=self.device)}
