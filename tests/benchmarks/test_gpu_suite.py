"""The GPU suite's CPU smoke run: every section on tiny models, so the script cannot rot between GPU runs."""

import json

import pytest

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
