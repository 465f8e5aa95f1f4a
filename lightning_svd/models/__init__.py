"""VideoLDM backbone (UNet + temporal layers), its presets and checkpoint loading/conversion."""

from lightning_svd.models.state_dict_io import CheckpointError
from lightning_svd.models.unet import PRESETS, UNetConfig, VideoUNet, build_unet
from lightning_svd.models.unet_checkpoints import load_unet, save_unet_diffusers, save_unet_official

__all__ = [
    "PRESETS",
    "CheckpointError",
    "UNetConfig",
    "VideoUNet",
    "build_unet",
    "load_unet",
    "save_unet_diffusers",
    "save_unet_official",
]
