"""Config-facing builders: every registered name builds, bad names and parameters give one-line errors."""

import pytest
import torch
from omegaconf import OmegaConf

from lightning_svd.diffusion import (
    PRESETS,
    DiscreteVPreconditioning,
    EDMPreconditioning,
    LinearFrameCFG,
    VanillaCFG,
    VScalingEDMNoise,
    build_diffusion,
    build_discretization,
    build_guider,
    build_loss_weighting,
    build_noise_distribution,
    build_preconditioning,
    build_sampler,
    sample_heun,
)
from lightning_svd.errors import UserError

from .gaussian import GaussianData


def test_each_name_builds_its_part():
    assert isinstance(build_preconditioning({"name": "svd"}), VScalingEDMNoise)
    assert build_preconditioning({"name": "edm", "sigma_data": 0.7}).sigma_data == 0.7
    assert isinstance(build_preconditioning("discrete_v"), DiscreteVPreconditioning)
    assert build_noise_distribution({"name": "log_normal", "p_mean": 1.0, "p_std": 1.2}).p_mean == 1.0
    assert build_loss_weighting({"name": "min_snr", "gamma": 3.0}).gamma == 3.0
    assert build_discretization({"name": "karras", "sigma_max": 80.0})(4)[0].item() == pytest.approx(80.0)
    assert isinstance(build_guider({"name": "cfg", "scale": 12.0}), VanillaCFG)
    assert isinstance(
        build_guider(OmegaConf.create({"name": "linear_frames", "max_scale": 3.0, "num_frames": 25})), LinearFrameCFG
    )
    sampler = build_sampler({"name": "heun", "s_churn": 1.0})
    assert sampler.func is sample_heun and sampler.keywords == {"s_churn": 1.0}


def test_unknown_name_lists_the_valid_choices_on_one_line():
    with pytest.raises(UserError) as error:
        build_preconditioning({"name": "vp"})
    assert str(error.value) == "unknown preconditioning 'vp'; valid choices: discrete_v, edm, svd"
    with pytest.raises(UserError, match="unknown sampler 'dpm'; valid choices: ddim, euler, heun"):
        build_sampler("dpm")
    with pytest.raises(UserError, match="needs a 'name' key"):
        build_guider({"scale": 2.0})


def test_bad_parameters_name_the_valid_ones():
    with pytest.raises(UserError, match="'edm' got unknown parameter\\(s\\) sigma; valid parameters: sigma_data"):
        build_preconditioning({"name": "edm", "sigma": 1.0})
    with pytest.raises(UserError, match="'euler' got unknown parameter\\(s\\) eta; valid parameters: s_churn"):
        build_sampler({"name": "euler", "eta": 1.0})
    with pytest.raises(UserError, match="guider 'cfg' needs parameter\\(s\\) scale"):
        build_guider("cfg")
    with pytest.raises(UserError, match="discretization 'karras': karras sigmas need 0 < sigma_min < sigma_max"):
        build_discretization({"name": "karras", "sigma_min": 1.0, "sigma_max": 0.5})
    with pytest.raises(UserError, match="noise distribution 'log_normal': p_std must be non-negative"):
        build_diffusion({"noise": {"p_std": -1.0}})


def test_presets_hold_the_papers_settings():
    svd = build_diffusion({"preset": "svd"})
    assert isinstance(svd.preconditioning, VScalingEDMNoise)
    assert svd.discretization.sigma_max == 700.0 and svd.num_steps == 25
    assert svd.guider.frame_scales()[[0, -1]].tolist() == [1.0, 2.5]
    proxy = build_diffusion({"preset": "sd21_v_proxy"})
    assert isinstance(proxy.preconditioning, DiscreteVPreconditioning)
    assert proxy.guider.scale == 12.0 and proxy.num_steps == 50 and proxy.loss.offset_noise == 0.1
    assert proxy.sampler.func.__name__ == "sample_ddim"
    assert set(PRESETS) == {"svd", "sd21_v_proxy"}


def test_overrides_replace_named_parts_and_update_unnamed_ones():
    diffusion = build_diffusion(
        OmegaConf.create(
            {
                "preconditioning": {"name": "edm", "sigma_data": 0.5},
                "noise": {"p_mean": 0.7},
                "sampling": {"guider": {"max_scale": 3.0, "min_scale": 1.5, "num_frames": 25}, "num_steps": 30},
            }
        )
    )
    assert isinstance(diffusion.preconditioning, EDMPreconditioning)
    assert diffusion.loss.noise_distribution.p_mean == 0.7 and diffusion.loss.noise_distribution.p_std == 1.6
    assert diffusion.guider.frame_scales()[[0, -1]].tolist() == [1.5, 3.0] and diffusion.num_steps == 30


def test_an_unset_key_keeps_the_presets_value():
    assert build_diffusion({"preset": "sd21_v_proxy", "offset_noise": None}).loss.offset_noise == 0.1
    assert build_diffusion({"preset": "sd21_v_proxy", "offset_noise": 0.5}).loss.offset_noise == 0.5


def test_unknown_keys_and_presets_are_errors():
    with pytest.raises(UserError, match="unknown key\\(s\\) sampler in diffusion; valid keys"):
        build_diffusion({"sampler": {"name": "euler"}})
    with pytest.raises(UserError, match="unknown key\\(s\\) steps in diffusion.sampling"):
        build_diffusion({"sampling": {"steps": 10}})
    with pytest.raises(UserError, match="unknown diffusion preset 'edm'; valid choices: sd21_v_proxy, svd"):
        build_diffusion({"preset": "edm"})


@pytest.mark.parametrize("preset", ["svd", "sd21_v_proxy"])
def test_sample_runs_the_whole_chain(preset):
    """The built chain (discretization, initial noise, guidance, sampler) recovers Gaussian data's mean."""
    data = GaussianData(mu=0.5, s0=1.0)
    overrides = {"preset": preset, "sampling": {"num_steps": 40}}
    if preset == "svd":
        overrides["sampling"]["guider"] = {"num_frames": 4}
    diffusion = build_diffusion(overrides)

    def denoiser(x, sigma, cond):
        return data.denoise(x, sigma) * cond["gain"][:, None]

    cond, uncond = {"gain": torch.ones(4 * 256)}, {"gain": torch.ones(4 * 256)}
    samples = diffusion.sample(denoiser, (4 * 256, 8), cond, uncond, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (1024, 8)
    assert samples.mean().item() == pytest.approx(0.5, abs=0.05)
    assert samples.std().item() == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize(("sampling_share", "expected"), [(None, 0.9), (0.99, 0.99)])
def test_sampling_draws_from_the_frame_noise_prior_of_training_unless_told_another(sampling_share, expected):
    """Initial and fresh (ancestral) noise share the configured part across each clip's frames: training's, or
    `sampling.shared_frame_noise` where set (training keeps its own)."""
    diffusion = build_diffusion({"preset": "sd21_v_proxy", "shared_frame_noise": 0.9, "sampling": {
        "num_steps": 4, "sampler": {"eta": 1.0}, "shared_frame_noise": sampling_share}})
    assert diffusion.loss.shared_frame_noise == 0.9
    seen = []

    def denoiser(x, sigma, cond):
        seen.append(x / torch.sqrt(sigma[:, None, None, None] ** 2 + 1.0))
        return torch.zeros_like(x)

    cond = {"gain": torch.ones(64 * 4)}
    diffusion.sample(denoiser, (64 * 4, 3, 8, 8), cond, cond, torch.Generator().manual_seed(6), num_frames=4)
    for x in (seen[0], seen[-1]):  # the start; after three ancestral steps, fresh noise only (D = 0)
        clips = x[: 64 * 4].unflatten(0, (64, 4)).flatten(2)
        same_clip = (clips[:, 0] * clips[:, 1]).mean() / (clips[:, 0] ** 2).mean()
        assert same_clip.item() == pytest.approx(expected, abs=0.04)


def test_shared_frame_noise_outside_zero_to_one_is_a_one_line_error():
    with pytest.raises(UserError, match=r"diffusion.shared_frame_noise must be in \[0, 1\) .*got 1.0"):
        build_diffusion({"shared_frame_noise": 1.0})
    with pytest.raises(UserError, match=r"diffusion.sampling.shared_frame_noise must be in \[0, 1\) .*got -0.1"):
        build_diffusion({"sampling": {"shared_frame_noise": -0.1}})
