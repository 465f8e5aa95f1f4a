"""Camera-motion LoRA (paper §4.3.1, D.4.2): rank-16 adapters on the temporal attention of an image-to-video
model; only the adapters train, one LoRA per motion class (pan, zoom, static: `train.data.camera_motion`).
"""

from collections.abc import Mapping
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from lightning_svd.models.lora import add_lora, lora_parameters, lora_state_dict
from lightning_svd.stages.i2v import ImageToVideoStage


class CameraLoRAStage(ImageToVideoStage):
    def build_network(self, cfg: Mapping) -> nn.Module:
        unet = super().build_network(cfg)
        unet.requires_grad_(False)
        lora = cfg["lora"]
        add_lora(unet, rank=int(lora["rank"]), alpha=float(lora["alpha"]), target=str(lora["target"]))
        return unet

    def trainable_parameters(self) -> list[nn.Parameter]:
        return lora_parameters(self.unet)

    def save_lora(self, path: str | Path) -> Path:
        """The adapters alone (safetensors, keys as in the UNet), from the EMA weights when EMA is on."""
        with self.ema_weights():
            tensors = {k: v.contiguous() for k, v in lora_state_dict(self.unet).items()}
        save_file(tensors, str(path))
        return Path(path)

    def export(self, run_dir: Path) -> dict:
        return {"lora": str(self.save_lora(Path(run_dir) / "lora.safetensors"))}
