"""Build the diffusion parts from config: one `{name: ..., <params>}` node per part, or a whole preset.

diffusion:
  preset: svd                 # or sd21_v_proxy; the keys below override the preset's
  preconditioning: {name: svd}
  noise: {name: log_normal, p_mean: 1.0, p_std: 1.6}
  weighting: {name: v}
  offset_noise: 0.0
  shared_frame_noise: 0.0     # share of the noise common to a clip's frames in training (and sampling, unless below)
  sampling:
    discretization: {name: karras, sigma_min: 0.002, sigma_max: 700.0, rho: 7.0}
    sampler: {name: euler}
    guider: {name: linear_frames, min_scale: 1.0, max_scale: 2.5, num_frames: 14}
    num_steps: 25
    initial_noise_data_std: 1.0
    shared_frame_noise: null  # the share at sampling, where it differs from training's (null: the same)
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from lightning_svd.diffusion.guidance import GUIDERS, guided
from lightning_svd.diffusion.loss import LOSS_WEIGHTINGS, DenoisingLoss
from lightning_svd.diffusion.noise import NOISE_DISTRIBUTIONS, frame_noise
from lightning_svd.diffusion.preconditioning import PRECONDITIONINGS, Denoiser
from lightning_svd.diffusion.samplers import SAMPLERS, initial_noise
from lightning_svd.diffusion.schedules import DISCRETIZATIONS
from lightning_svd.errors import UserError

PRESETS: dict[str, dict[str, Any]] = {
    # Section 4 models: EDM with SVD's V-scaling, sampled like the released image-to-video model (14 frames).
    "svd": {
        "preconditioning": {"name": "svd"},
        "noise": {"name": "log_normal", "p_mean": 1.0, "p_std": 1.6},
        "weighting": {"name": "v"},
        "offset_noise": 0.0,
        "shared_frame_noise": 0.0,
        "sampling": {
            "discretization": {"name": "karras", "sigma_min": 0.002, "sigma_max": 700.0, "rho": 7.0},
            "sampler": {"name": "euler"},
            "guider": {"name": "linear_frames", "min_scale": 1.0, "max_scale": 2.5, "num_frames": 14},
            "num_steps": 25,
            "initial_noise_data_std": 1.0,
        },
    },
    # Section 3 ablation proxies: SD 2.1's discrete schedule, v-prediction, offset noise; DDIM 50, guidance 12.
    # The offset-noise strength is not in the paper; 0.1 is the usual value.
    "sd21_v_proxy": {
        "preconditioning": {"name": "discrete_v"},
        "noise": {"name": "discrete"},
        "weighting": {"name": "v"},
        "offset_noise": 0.1,
        "shared_frame_noise": 0.0,
        "sampling": {
            "discretization": {"name": "discrete"},
            "sampler": {"name": "ddim", "eta": 0.0},
            "guider": {"name": "cfg", "scale": 12.0},
            "num_steps": 50,
            "initial_noise_data_std": 1.0,
        },
    },
}


def build_preconditioning(spec: Mapping[str, Any] | str) -> Any:
    return PRECONDITIONINGS.build(spec)


def build_noise_distribution(spec: Mapping[str, Any] | str) -> Any:
    return NOISE_DISTRIBUTIONS.build(spec)


def build_loss_weighting(spec: Mapping[str, Any] | str) -> Any:
    return LOSS_WEIGHTINGS.build(spec)


def build_discretization(spec: Mapping[str, Any] | str) -> Any:
    return DISCRETIZATIONS.build(spec)


def build_sampler(spec: Mapping[str, Any] | str) -> Callable[..., torch.Tensor]:
    return SAMPLERS.bind(spec)


def build_guider(spec: Mapping[str, Any] | str) -> Any:
    return GUIDERS.build(spec)


@dataclass
class Diffusion:
    """Every diffusion part a stage needs, built from one config node."""

    preconditioning: Any
    loss: DenoisingLoss
    discretization: Any
    sampler: Callable[..., torch.Tensor]
    guider: Any
    num_steps: int
    initial_noise_data_std: float
    shared_frame_noise: float
    sampling_shared_frame_noise: float

    def denoiser(self, network: nn.Module) -> Denoiser:
        return Denoiser(network, self.preconditioning)

    def sample(
        self,
        denoiser: Callable[..., torch.Tensor],
        shape: tuple[int, ...],
        cond: Mapping[str, Any] | None = None,
        uncond: Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        disable_progress: bool = True,
        num_frames: int = 1,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        """Draw clean samples of `shape` (B*T, C, H, W) from `denoiser(x, sigma, cond)` with guidance, from
        the frame-noise prior (T = num_frames; training's share unless sampling sets its own), in `num_steps`
        (default: the configured count)."""
        sigmas = self.discretization(num_steps or self.num_steps, device=device)
        shared = self.sampling_shared_frame_noise
        x = initial_noise(shape, float(sigmas[0]), self.initial_noise_data_std, generator, device,
                          num_frames=num_frames, shared_frame_noise=shared)

        def noise(like: torch.Tensor) -> torch.Tensor:
            return frame_noise(like.shape, num_frames, shared, generator, like.device, like.dtype)

        denoise = guided(denoiser, self.guider, cond, uncond)
        return self.sampler(denoise, x, sigmas, generator=generator, noise=noise, disable=disable_progress)


_TOP_KEYS = {"preset", "preconditioning", "noise", "weighting", "offset_noise", "shared_frame_noise", "sampling"}
_SAMPLING_KEYS = {"discretization", "sampler", "guider", "num_steps", "initial_noise_data_std", "shared_frame_noise"}


def build_diffusion(cfg: Mapping[str, Any] | None = None) -> Diffusion:
    """Build all parts from `cfg` over its `preset` (default `svd`); unknown keys are an error.

    A part node with a `name` replaces the preset's part; one without only changes the given parameters.
    """
    user = OmegaConf.to_container(OmegaConf.create(dict(cfg or {})), resolve=True)
    preset = user.pop("preset", "svd")
    if preset not in PRESETS:
        raise UserError(f"unknown diffusion preset {preset!r}; valid choices: {', '.join(sorted(PRESETS))}")
    _check_keys("diffusion", user, _TOP_KEYS)
    user_sampling = user.pop("sampling", {})
    _check_keys("diffusion.sampling", user_sampling, _SAMPLING_KEYS)
    merged = _override(PRESETS[preset], user)
    sampling = _override(PRESETS[preset]["sampling"], user_sampling)
    num_steps = int(sampling["num_steps"])
    if num_steps < 1:
        raise UserError(f"diffusion.sampling.num_steps must be at least 1, got {num_steps}")
    shared_frame_noise = checked_share("diffusion.shared_frame_noise", merged["shared_frame_noise"])
    sampling_shared = sampling.get("shared_frame_noise")
    sampling_shared = shared_frame_noise if sampling_shared is None else checked_share(
        "diffusion.sampling.shared_frame_noise", sampling_shared)
    loss = DenoisingLoss(
        build_noise_distribution(merged["noise"]),
        build_loss_weighting(merged["weighting"]),
        offset_noise=float(merged["offset_noise"]),
        shared_frame_noise=shared_frame_noise,
    )
    return Diffusion(
        preconditioning=build_preconditioning(merged["preconditioning"]),
        loss=loss,
        discretization=build_discretization(sampling["discretization"]),
        sampler=build_sampler(sampling["sampler"]),
        guider=build_guider(sampling["guider"]),
        num_steps=num_steps,
        initial_noise_data_std=float(sampling["initial_noise_data_std"]),
        shared_frame_noise=shared_frame_noise,
        sampling_shared_frame_noise=sampling_shared,
    )


def checked_share(key: str, value) -> float:
    share = float(value)
    if not 0.0 <= share < 1.0:
        raise UserError(f"{key} must be in [0, 1) (0 = independent frames), got {share}")
    return share


def _override(base: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in user.items():
        if value is None:  # an unset key keeps the preset's value
            continue
        keeps_base_part = isinstance(value, Mapping) and "name" not in value and isinstance(base.get(key), Mapping)
        merged[key] = {**base[key], **value} if keeps_base_part else value
    return merged


def _check_keys(where: str, node: Mapping[str, Any], valid: set[str]) -> None:
    unknown = sorted(set(node) - valid)
    if unknown:
        raise UserError(f"unknown key(s) {', '.join(unknown)} in {where}; valid keys: {', '.join(sorted(valid))}")
