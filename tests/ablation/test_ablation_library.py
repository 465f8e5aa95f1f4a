"""The ablation library on its own: typed results that survive JSON, and no import of the tasks above it."""

import ast
import json
from pathlib import Path

import pytest

import lightning_svd.ablation
from lightning_svd.ablation.results import AblationResult, ArmResult, ProxyShape, SeedResult, Spread

LIBRARY = Path(lightning_svd.ablation.__file__).parent


def full_result() -> AblationResult:
    """Every field set, so a field the round trip drops shows up as a difference."""
    seeds = [SeedResult(0, 200, 0.41, 12.5, 0.25, 3.0), SeedResult(1, 200, 0.43, 14.5, 0.5, 1.0)]
    arms = (
        ArmResult.over_seeds(seeds, name="aesthetic_remove_0pct", removed_fraction=0.0, num_clips=40,
                             threshold=None, degraded_share=0.359, elo=1003.5, sample_frame_difference=7.1,
                             prompt_colour_distance=20.5, other_prompts_colour_distance=80.25, prompt_following=0.625),
        ArmResult.over_seeds(seeds[:1], name="aesthetic_remove_50pct", removed_fraction=0.5, num_clips=20,
                             threshold=4.25, degraded_share=0.0),
    )
    return AblationResult(
        experiment="ablation_aesthetic", criterion="aesthetic", profile="tiny", arms=arms,
        feature_extractor={"kind": "domain", "comparable": False}, notes=("First note.", "Second note."),
        seeds=(0, 1), subset_size=60, num_real_clips=5, num_real_videos=20, real_clips_clean_only=True,
        heldout_videos=("/c/v1.mp4",), prompts=({"id": "p000", "text": "a red square"},), samples_per_prompt=4,
        study_pack="/run/study", judge={"steps": 300, "heldout_accuracy": {"degradation": 0.9}},
        simulated_raters={"label": "simulated raters", "votes_per_pair": 3}, clip_table="/cache/clips",
        image_model="/cache/image_models/k/checkpoints/last.ckpt", plot="ablation.png", sample_grid="samples.png",
        proxy=ProxyShape("ablation_proxy", 4, 32, 32, 10))


def test_results_survive_a_json_round_trip():
    result = full_result()
    assert AblationResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_results_json_keeps_the_spec_contracts_flat_arm_keys():
    stored = full_result().to_dict()
    first = stored["arms"][0]
    assert {"name", "removed_fraction", "num_clips", "threshold", "train_steps", "final_loss", "fvd",
            "elo"} <= set(first)
    assert first["fvd"] == 13.5 and first["fvd_spread"] == pytest.approx(1.414214)
    assert first["degraded_sample_share"] == 0.375 and first["seeds"][1]["simulated_elo_gain"] == 1.0
    assert stored["arms"][1]["fvd_spread"] is None  # one seed: no spread
    assert stored["notes"] == "First note.\nSecond note." and stored["proxy"]["height"] == 32


def test_a_minimal_contract_file_reads_and_a_broken_one_says_what_it_lacks():
    minimal = {"experiment": "e", "criterion": "ocr", "profile": "tiny", "notes": "one", "arms": [
        {"name": "a", "removed_fraction": 0.0, "num_clips": 3, "threshold": None, "train_steps": 2,
         "final_loss": 0.1, "fvd": None, "a_key_from_a_newer_version": 1}]}
    result = AblationResult.from_dict(minimal)
    assert result.arms[0].final_loss == Spread(0.1, None) and result.arms[0].seeds == () and result.notes == ("one",)
    del minimal["arms"][0]["fvd"]
    with pytest.raises(ValueError, match="arm 'a' lacks fvd"):
        AblationResult.from_dict(minimal)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved against its package."""
    package = "lightning_svd.ablation"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(filter(None, [base, node.module]))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_the_ablation_library_imports_no_task():
    """The tasks wire the library together; the library importing a task back would make a cycle."""
    offenders = {path.name: sorted(m for m in imported_modules(path) if m.startswith("lightning_svd.tasks"))
                 for path in sorted(LIBRARY.glob("*.py"))}
    assert len(offenders) > 5 and {name: found for name, found in offenders.items() if found} == {}


def test_the_import_check_sees_relative_and_absolute_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from ..tasks import train\nimport lightning_svd.tasks.curate\nfrom . import data\n")
    assert {"lightning_svd.tasks.train", "lightning_svd.tasks.curate", "lightning_svd.ablation.data"} <= \
        imported_modules(sample)
