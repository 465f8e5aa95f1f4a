"""VideoLDM backbone (UNet + temporal layers), autoencoder, presets and checkpoint loading/conversion."""

from lightning_svd.models.autoencoder import AutoencoderConfig, AutoencoderKL, build_autoencoder
from lightning_svd.models.autoencoder_checkpoints import load_autoencoder, save_autoencoder
from lightning_svd.models.state_dict_io import CheckpointError
from lightning_svd.models.unet import PRESETS, UNetConfig, VideoUNet, build_unet
from lightning_svd.models.unet_checkpoints import load_unet, save_unet_diffusers, save_unet_official

__all__ = [
    "PRESETS",
    "AutoencoderConfig",
    "AutoencoderKL",
    "CheckpointError",
    "UNetConfig",
    "VideoUNet",
    "build_autoencoder",
    "build_unet",
    "load_autoencoder",
    "load_unet",
    "save_autoencoder",
    "save_unet_diffusers",
    "save_unet_official",
]
