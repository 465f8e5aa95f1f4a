"""The diffusion core: small orthogonal parts (preconditioning, noise levels, loss weights, discretizations,
samplers, guiders), each chosen by name from config. Models know nothing of these; stages wire them.
"""

from lightning_svd.diffusion.factory import (
    PRESETS,
    Diffusion,
    build_diffusion,
    build_discretization,
    build_guider,
    build_loss_weighting,
    build_noise_distribution,
    build_preconditioning,
    build_sampler,
)
from lightning_svd.diffusion.guidance import LinearFrameCFG, NoGuidance, VanillaCFG, guided
from lightning_svd.diffusion.loss import (
    DenoisingLoss,
    EDMWeighting,
    LossOutput,
    MinSNRWeighting,
    UnitWeighting,
    VWeighting,
)
from lightning_svd.diffusion.noise import DiscreteTimestepSigmas, LogNormalSigmas, frame_noise, training_noise
from lightning_svd.diffusion.preconditioning import (
    Denoiser,
    DiscreteVPreconditioning,
    EDMPreconditioning,
    Scalings,
    VScalingEDMNoise,
)
from lightning_svd.diffusion.samplers import initial_noise, sample_ddim, sample_euler, sample_heun
from lightning_svd.diffusion.schedules import DiscreteSchedule, DiscreteScheduleSigmas, KarrasSigmas

__all__ = [
    "PRESETS",
    "Denoiser",
    "DenoisingLoss",
    "Diffusion",
    "DiscreteSchedule",
    "DiscreteScheduleSigmas",
    "DiscreteTimestepSigmas",
    "DiscreteVPreconditioning",
    "EDMPreconditioning",
    "EDMWeighting",
    "KarrasSigmas",
    "LinearFrameCFG",
    "LogNormalSigmas",
    "LossOutput",
    "MinSNRWeighting",
    "NoGuidance",
    "Scalings",
    "UnitWeighting",
    "VScalingEDMNoise",
    "VWeighting",
    "VanillaCFG",
    "build_diffusion",
    "build_discretization",
    "build_guider",
    "build_loss_weighting",
    "build_noise_distribution",
    "build_preconditioning",
    "build_sampler",
    "frame_noise",
    "guided",
    "initial_noise",
    "sample_ddim",
    "sample_euler",
    "sample_heun",
    "training_noise",
]
