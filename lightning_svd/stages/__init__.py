"""One LightningModule per training stage, all on the shared VideoLDM backbone (see `base.DiffusionStage`).

`STAGES` maps the config's `train.name` to its class; experiments pick one and state what differs.
"""

from lightning_svd.stages.base import DiffusionStage
from lightning_svd.stages.camera_lora import CameraLoRAStage
from lightning_svd.stages.checkpoints import load_init_weights, load_stage, resolve_checkpoint
from lightning_svd.stages.i2v import ImageToVideoStage
from lightning_svd.stages.interpolation import InterpolationStage
from lightning_svd.stages.multiview import MultiviewStage
from lightning_svd.stages.video import ImageStage, TextToVideoStage

STAGES = {
    "image": ImageStage,
    "text_to_video": TextToVideoStage,
    "image_to_video": ImageToVideoStage,
    "interpolation": InterpolationStage,
    "camera_lora": CameraLoRAStage,
    "multiview": MultiviewStage,
}

__all__ = [
    "STAGES",
    "CameraLoRAStage",
    "DiffusionStage",
    "ImageStage",
    "ImageToVideoStage",
    "InterpolationStage",
    "TextToVideoStage",
    "load_init_weights",
    "load_stage",
    "resolve_checkpoint",
]
