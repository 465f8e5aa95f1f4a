"""The GPU suite's CPU smoke run: every section on tiny models, so the script cannot rot between GPU runs."""

import json

import pytest
import torch

from benchmarks import gpu_suite


@pytest.mark.slow
def test_tiny_suite_runs_every_section_on_the_cpu(tmp_path):
    results = gpu_suite.main(["--tiny", "--device", "cpu", "--out", str(tmp_path)])

    assert results["errors"] == {}
    sections = results["sections"]
    assert set(sections) == set(gpu_suite.SECTIONS)
    unet = sections["unet"]
    assert unet["relative_difference"] < 1e-4  # ours and diffusers compute the same function on the same weights
    assert unet["ours_s"] > 0 and unet["diffusers_s"] > 0 and unet["time_ratio"] > 0
    train = sections["train"]
    assert train["step_s"] > 0 and 0 < train["model_flop_per_step"] < train["counted_flop_per_step"]  # recompute
    assert 0 < train["mfu"] < train["hfu"]
    assert train["finetune"]["video"] == [1, *gpu_suite.TINY.finetune_video]
    sample = sections["sample"]
    assert sample["ours"]["total_s"] > 0 and sample["diffusers"]["total_s"] > 0
    curation = sections["curation"]
    assert not [name for name, part in curation.items() if "error" in part]
    assert curation["clip"]["fp32_images_per_s"] > 0 and curation["fvd"]["r3d_18_clips_per_s"] > 0
    assert "CPUExecutionProvider" in curation["ocr"]["providers"]
    written = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert written["sections"].keys() == sections.keys()
    table = (tmp_path / "gpu_suite.md").read_text()
    assert "| UNet fwd+bwd" in table and "| I2V sampling" in table and "| full finetune" in table


def test_a_failing_section_is_reported_and_the_next_one_runs(tmp_path, monkeypatch, capsys):
    def broken(args, sizes):
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(gpu_suite, "section_unet", broken)
    monkeypatch.setattr(gpu_suite, "section_train", lambda args, sizes: {"step_s": 1.0})

    results = gpu_suite.main(["--tiny", "--device", "cpu", "--sections", "unet,train", "--out", str(tmp_path)])

    assert results["errors"] == {"unet": "RuntimeError: out of memory"}
    assert results["sections"] == {"train": {"step_s": 1.0}}
    assert "[unet] failed: RuntimeError: out of memory" in capsys.readouterr().out
    assert json.loads((tmp_path / "gpu_suite.json").read_text())["errors"]["unet"] == "RuntimeError: out of memory"


def test_sections_past_the_time_budget_are_skipped_and_named(tmp_path):
    results = gpu_suite.main(["--tiny", "--device", "cpu", "--sections", "unet", "--budget-s", "-1"])

    assert results["sections"] == {}
    assert results["errors"]["unet"].startswith("skipped:")


def test_unknown_sections_are_refused():
    with pytest.raises(SystemExit, match="unknown section"):
        gpu_suite.main(["--tiny", "--device", "cpu", "--sections", "unet,warp"])


@pytest.mark.slow
def test_tiny_optimisation_variants_run_on_the_cpu(tmp_path):
    """Every variant flag of issue 19's optimisation run, on tiny models (compile with dynamo's eager backend)."""
    results = gpu_suite.main(["--tiny", "--device", "cpu", "--sections", "unet,train,sample", "--train-batch", "1,2",
                              "--train-uncheckpointed", "--sdpa", "--channels-last", "--sample-bf16-unet",
                              "--compile", "regional", "--compile-backend", "eager", "--out", str(tmp_path)])

    assert results["errors"] == {}
    sections = results["sections"]
    assert list(sections) == ["unet", "train", "sample", "compile_unet", "compile_train"]
    unet = sections["unet"]
    sites = unet["sdpa_sites"]["train_fwd_bwd"]["per_pass_s"]
    assert sites["spatial"]["default"] > 0 and sites["temporal"]["math"] > 0  # math runs every shape on the CPU
    variants = unet["variants"]
    assert {"default", "spatial=math", "temporal=flash", "channels_last"} <= set(variants)
    assert variants["spatial=math"]["best_s"] > 0 and variants["channels_last"]["best_s"] > 0
    train = sections["train"]
    assert [row["batch"] for row in train["batches"]] == [1, 2]
    assert train["batches"][1]["model_flop_per_step"] == 2 * train["batches"][0]["model_flop_per_step"]
    assert train["uncheckpointed"]["step_s"] > 0 and train["vae_encode_s"] > 0
    assert sections["sample"]["ours_bf16_unet"]["total_s"] > 0
    compiled = sections["compile_unet"]
    assert compiled["relative_difference"] < 1e-5 and compiled["graph_breaks"] == 0 and compiled["compile_s"] >= 0
    assert sections["compile_train"]["batch"] == 2 and sections["compile_train"]["after"]["step_s"] > 0
    table = (tmp_path / "gpu_suite.md").read_text()
    assert "ours with channels_last" in table and "torch.compile (regional)" in table and "ours_bf16_unet" in table


def test_attention_backends_and_channels_last_leave_the_function_and_the_model_unchanged():
    from lightning_svd.models.attention import Attention
    from lightning_svd.models.unet import build_unet

    torch.manual_seed(0)
    unet = build_unet("tiny").eval()
    x, c_noise = torch.randn(4, 4, 8, 8), torch.rand(4)
    context, y = torch.randn(4, 1, 32), torch.randn(4, 24)
    with torch.no_grad():
        expected = unet(x, c_noise, context, y, num_frames=2)
        with gpu_suite.attention_backends(unet, spatial="math", temporal="flash") as patched:
            with_backends = unet(x, c_noise, context, y, num_frames=2)
        with gpu_suite.channels_last(unet) as convolutions:
            in_channels_last = unet(x, c_noise, context, y, num_frames=2)

    transformers = sum(type(m).__name__ == "VideoTransformer" for m in unet.modules())
    assert patched == 4 * transformers and convolutions > 0  # a spatial and a temporal block each, two attentions
    torch.testing.assert_close(with_backends, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(in_channels_last, expected, rtol=1e-5, atol=1e-6)
    assert not any("forward" in vars(m) for m in unet.modules() if isinstance(m, Attention))
    assert all(p.is_contiguous() for p in unet.parameters())


def test_attention_sites_count_every_call_of_the_unet():
    from lightning_svd.models.unet import PRESETS

    sites = gpu_suite.attention_sites(PRESETS["svd"], 1, 14, 40, 72)
    spatial_self = {s["level"]: s for s in sites if s["kind"] == "spatial" and s["attention"] == "self"}
    assert sorted(spatial_self) == [0, 1, 2, 3]  # attention levels 0-2 and the middle block at level 3
    assert [spatial_self[level]["count"] for level in range(4)] == [5, 5, 5, 1]  # 2 down + 3 up; middle
    assert spatial_self[0]["lq"] == 40 * 72 and spatial_self[0]["heads"] == 5 and spatial_self[0]["head_dim"] == 64
    temporal_self = next(s for s in sites if s["kind"] == "temporal" and s["attention"] == "self" and s["level"] == 1)
    assert (temporal_self["n"], temporal_self["lq"]) == (20 * 36, 14)


def test_train_batches_and_the_compile_sections_are_parsed(tmp_path):
    assert gpu_suite.parse_args(["--train-batch", "1,4,8"]).train_batches == [1, 4, 8]
    assert gpu_suite.parse_args([]).train_batches == [1]
    with pytest.raises(SystemExit):
        gpu_suite.parse_args(["--train-batch", "0"])
    results = gpu_suite.main(["--tiny", "--device", "cpu", "--sections", "unet,compile", "--budget-s", "-1"])
    assert list(results["errors"]) == ["unet", "compile_unet", "compile_train"]  # named, and skipped by the budget
