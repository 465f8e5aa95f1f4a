"""Guiders: the doubled [uncond, cond] batch, the CFG combination, and SVD's per-frame linear scales."""

import pytest
import torch

from lightning_svd.diffusion import LinearFrameCFG, NoGuidance, VanillaCFG, guided


def test_vanilla_cfg_doubles_the_batch_and_combines_literally():
    guider = VanillaCFG(scale=7.5)
    x, sigma = torch.randn(6, 4, 2, 2), torch.rand(6) + 0.1
    cond = {"context": torch.randn(6, 1, 8), "y": torch.randn(6, 5), "num_frames": 3}
    uncond = {"context": torch.zeros(6, 1, 8), "y": cond["y"].clone(), "num_frames": 3}
    model_x, model_sigma, model_cond = guider.prepare(x, sigma, cond, uncond)
    assert torch.equal(model_x, torch.cat([x, x])) and torch.equal(model_sigma, torch.cat([sigma, sigma]))
    assert torch.equal(model_cond["context"], torch.cat([uncond["context"], cond["context"]]))
    assert model_cond["num_frames"] == 3
    x_u, x_c = torch.randn(2, 6, 4, 2, 2)
    guided_out = guider.combine(torch.cat([x_u, x_c]))
    torch.testing.assert_close(guided_out, x_u + 7.5 * (x_c - x_u))
    # The paper's form: D^w = w D(x; c) - (w - 1) D(x; u).
    torch.testing.assert_close(guided_out, 7.5 * x_c - 6.5 * x_u)


def test_scale_one_is_the_conditional_model():
    x_u, x_c = torch.randn(2, 4, 3)
    torch.testing.assert_close(VanillaCFG(1.0).combine(torch.cat([x_u, x_c])), x_c)


@pytest.mark.parametrize(("min_scale", "max_scale", "num_frames"), [(1.0, 2.5, 14), (1.5, 3.0, 25)])
def test_linear_frame_cfg_uses_one_scale_per_frame(min_scale, max_scale, num_frames):
    guider = LinearFrameCFG(max_scale=max_scale, num_frames=num_frames, min_scale=min_scale)
    scales = guider.frame_scales()
    assert scales[0].item() == pytest.approx(min_scale) and scales[-1].item() == pytest.approx(max_scale)
    step = (max_scale - min_scale) / (num_frames - 1)
    torch.testing.assert_close(torch.diff(scales), torch.full((num_frames - 1,), step))
    clips = 2
    x_u, x_c = torch.randn(2, clips * num_frames, 4, 3, 3)
    guided_out = guider.combine(torch.cat([x_u, x_c]))
    for b in range(clips):
        for t in range(num_frames):
            row = b * num_frames + t
            expected = x_u[row] + (min_scale + t * step) * (x_c[row] - x_u[row])
            torch.testing.assert_close(guided_out[row], expected)


def test_linear_frame_cfg_rejects_rows_that_are_not_whole_clips():
    with pytest.raises(ValueError, match="whole number of 14-frame clips"):
        LinearFrameCFG(max_scale=2.5, num_frames=14).combine(torch.zeros(2 * 13, 4))


def test_linear_frame_ramp_spans_the_frames_being_sampled():
    """Configured for 14 frames (svd), sampling 5-frame clips: the ramp is linspace(1, 2.5, 5) over each clip."""
    guider = LinearFrameCFG(max_scale=2.5, num_frames=14)

    def model(x, level, cond):
        return torch.cat([torch.zeros_like(x[:10]), torch.ones_like(x[10:])])  # uncond 0, cond 1

    cond = {"num_frames": 5, "y": torch.zeros(10, 1)}
    out = guided(model, guider, cond, {"num_frames": 5, "y": torch.ones(10, 1)})(torch.zeros(10, 2), torch.ones(10))
    ramp = torch.linspace(1.0, 2.5, 5)
    torch.testing.assert_close(out[:, 0], torch.cat([ramp, ramp]))
    with pytest.raises(ValueError, match="needs the clip length"):
        LinearFrameCFG(max_scale=2.5).combine(torch.zeros(4, 1))


def test_no_guidance_runs_the_conditional_model_once():
    calls = []

    def model(x, level, cond):
        calls.append(x.shape[0])
        return x * cond["gain"]

    denoise = guided(model, NoGuidance(), {"gain": 3.0})
    torch.testing.assert_close(denoise(torch.ones(5, 2), torch.ones(5)), torch.full((5, 2), 3.0))
    assert calls == [5]


def test_guided_model_sees_the_doubled_batch_and_returns_the_guided_output():
    def model(x, level, cond):
        return x * cond["gain"][:, None] + level[:, None]

    cond, uncond = {"gain": torch.full((4,), 2.0)}, {"gain": torch.full((4,), 0.5)}
    denoise = guided(model, VanillaCFG(3.0), cond, uncond)
    x, sigma = torch.randn(4, 2), torch.full((4,), 0.25)
    expected_u, expected_c = x * 0.5 + 0.25, x * 2.0 + 0.25
    torch.testing.assert_close(denoise(x, sigma), expected_u + 3.0 * (expected_c - expected_u))
    scalar_level = denoise(x, torch.tensor(0.25))
    torch.testing.assert_close(scalar_level, expected_u + 3.0 * (expected_c - expected_u))


def test_cfg_input_errors_name_the_problem():
    guider = VanillaCFG(2.0)
    x, level = torch.zeros(2, 3), torch.ones(2)
    with pytest.raises(ValueError, match="needs an unconditional input"):
        guider.prepare(x, level, {"y": torch.zeros(2, 1)}, None)
    with pytest.raises(ValueError, match="same keys"):
        guider.prepare(x, level, {"y": torch.zeros(2, 1)}, {"context": torch.zeros(2, 1)})
    with pytest.raises(ValueError, match="num_frames"):
        guider.prepare(x, level, {"num_frames": 2}, {"num_frames": 3})
