"""Text-conditioned stages: video pretraining, HQ text-to-video, the ablation proxy, and image adaptation.

Video pretraining, HQ finetuning and the proxy differ only in config (frames, resolution, noise, diffusion
preset, dropout), so they share `TextToVideoStage`. The image stage adds its one difference: for the first
`time_embedding_only_steps` steps only the time embedding trains (SD 2.1 -> EDM noise conditioning), then
everything does.
"""

from lightning_svd.stages.base import DiffusionStage


class TextToVideoStage(DiffusionStage):
    """Text tokens as context, fps_id / motion_bucket_id as the vector; all UNet layers train."""


class ImageStage(TextToVideoStage):
    """Image EDM adaptation: clips of one frame; a step threshold switches from time-embedding-only to all."""

    def on_train_batch_start(self, batch, batch_idx) -> None:
        only_time_embedding = self.global_step < int(self.hparams.stage["time_embedding_only_steps"])
        for name, parameter in self.unet.named_parameters():
            parameter.requires_grad_(not only_time_embedding or name.startswith("time_embed."))
