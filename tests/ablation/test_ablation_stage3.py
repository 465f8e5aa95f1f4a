"""The stage III curation ablation (Fig. 4e): its paper block, its arms' initialisations, and a tiny run end to end."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict
from test_ablation_parts import scored_table
from test_ablation_task import run_ablation

from lightning_svd.ablation.recipe import proxy_recipe
from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.tasks import ablation

PAPER_PATHS = ["ablation.clip_table", "ablation.prompts.file", "ablation.fvd.i3d_torchscript.path",
               "ablation.image_init.checkpoint", "ablation.stage3.curated_checkpoint",
               "ablation.stage3.uncurated_checkpoint", "ablation.extra_proxy_overrides: train.autoencoder.weights",
               "ablation.extra_proxy_overrides: train.open_clip.weights"]


def leaves(config: dict, prefix: str = "") -> dict:
    """Every leaf of a nested mapping by its dotted key."""
    flat = {}
    for name, value in config.items():
        key = f"{prefix}{name}"
        flat.update(leaves(value, f"{key}.") if isinstance(value, dict) else {key: value})
    return flat


def test_the_paper_block_finetunes_the_section_3_proxy_at_512_for_50k_steps():
    """App. E.2.3: the same proxy and hyper-parameters, only the size and the length change."""
    cfg = load_config("ablation_stage3", "paper", check_paths=False)
    assert cfg.ablation.criterion == "stage3_init" and cfg.ablation.stage3.hq.keep_fraction is None
    assert cfg.ablation.subset.fraction == 1.0 and cfg.ablation.subset.size is None  # the whole 250K table
    pretraining = leaves(OmegaConf.to_container(proxy_recipe(cfg), resolve=True))
    finetuning = leaves(OmegaConf.to_container(proxy_recipe(cfg, finetune=True), resolve=True))
    changed = {key: (pretraining[key], finetuning[key]) for key in finetuning if pretraining[key] != finetuning[key]}
    assert changed == {"train.height": (256, 512), "train.width": (256, 512), "trainer.max_steps": (40000, 50000)}
    assert finetuning["train.num_frames"] == 8 and finetuning["train.optimizer.lr"] == 1e-4
    assert finetuning["train.global_batch_size"] == 256


def test_under_the_paper_profile_every_missing_path_is_reported_at_once():
    with pytest.raises(UserError, match=f"missing {len(PAPER_PATHS)}: ") as error:
        load_config("ablation_stage3", "paper")
    assert all(f"{key} (not set)" in str(error.value) for key in PAPER_PATHS)


def test_each_arm_finetunes_the_high_quality_set_from_its_own_initialisation(tmp_path):
    paths = {name: tmp_path / f"{name}.ckpt" for name in ("image", "curated", "uncurated")}
    for path in paths.values():
        path.touch()
    cfg = load_config("ablation_stage3", "tiny", [
        f"ablation.image_init.checkpoint={paths['image']}", f"ablation.stage3.curated_checkpoint={paths['curated']}",
        f"ablation.stage3.uncurated_checkpoint={paths['uncurated']}"])
    table = scored_table()
    arms, image_model = ablation.build_arms(cfg, None, table)
    assert image_model == str(paths["image"])
    assert [arm.name for arm in arms] == ["init_image", "init_uncurated", "init_curated"]
    assert [arm.proxy_overrides for arm in arms] == [(f"init_from={paths[name]}",)
                                                     for name in ("image", "uncurated", "curated")]
    best = sorted(table["aesthetic_score"].to_pylist())[-10:]  # the top 25 % of 40 clips by the quality score
    for arm in arms:
        assert sorted(arm.table["aesthetic_score"].to_pylist()) == best
        assert arm.removed_fraction == 0.75 and arm.threshold == best[0]
    proxy = ablation.proxy_config(cfg, tmp_path / "clips.parquet", 1, tmp_path / "run", arms[2].proxy_overrides)
    assert proxy.init_from == str(paths["curated"])
    finetune_steps = cfg.ablation.stage3.finetune.trainer.max_steps  # the finetuning block, not the pretraining's
    assert proxy.trainer.max_steps == finetune_steps != cfg.ablation.proxy.trainer.max_steps


def test_an_arm_seed_starts_from_the_pretraining_of_its_own_seed(tmp_path):
    """Where the run pretrains the video models, the init path names the proxy config's own seed."""
    cfg = load_config("ablation_stage3", "tiny")
    template = str(tmp_path / "pretraining" / "curated" / "seed${seed}" / "checkpoints" / "last.ckpt")
    for seed in (0, 3):
        proxy = ablation.proxy_config(cfg, tmp_path / "clips.parquet", seed, tmp_path / "run",
                                      (f"init_from={template}",))
        resolved = OmegaConf.to_container(proxy, resolve=True)["init_from"]
        assert resolved == str(tmp_path / "pretraining" / "curated" / f"seed{seed}" / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize(("override", "message"), [
    ("ablation.stage3.curated_checkpoint=/somewhere.ckpt", "ablation.stage3.uncurated_checkpoint is not set"),
    ("ablation.stage3.hq.keep_fraction=0.0", "keep_fraction=0.0: give a fraction in \\(0, 1\\]"),
    ("ablation.stage3.hq.criterion=beauty", "unknown ablation.stage3.hq.criterion 'beauty'"),
])
def test_bad_stage3_settings_fail_before_the_curation_starts(override, message):
    with pytest.raises(UserError, match=message):
        ablation.check(load_config("ablation_stage3", "tiny", [override]))


def test_a_bad_finetuning_key_fails_naming_its_block():
    cfg = load_config("ablation_stage3", "tiny")
    with open_dict(cfg):
        cfg.ablation.stage3.finetune.train = {"foo": 1}
    with pytest.raises(UserError, match="ablation.stage3.finetune: unknown key 'train.foo'"):
        ablation.check(cfg)


def test_a_tiny_stage3_ablation_pretrains_both_video_models_then_finetunes_three_arms(tmp_path):
    run_dir = tmp_path / "run"
    results = run_ablation(run_dir, "ablation_stage3", "ablation.seeds=[0]",
                           "ablation.curation_overrides=[curation.workers=1]")
    assert results["criterion"] == "stage3_init"
    arms = results["arms"]
    assert [a["name"] for a in arms] == ["init_image", "init_uncurated", "init_curated"]
    assert len({a["num_clips"] for a in arms}) == 1 and all(a["train_steps"] == 2 for a in arms)
    assert min(a["simulated_elo_gain"] for a in arms) == 0  # relative to the lowest arm
    stored = json.loads((run_dir / "results.json").read_text())
    assert [a["name"] for a in stored["arms"]] == [a["name"] for a in arms]
    expected = {"init_image": results["image_model"]}
    for name in ("uncurated", "curated"):
        pretraining = json.loads((run_dir / "pretraining" / name / "seed0" / "results.json").read_text())
        assert pretraining["steps"] == 2 and pretraining["init_from"] == results["image_model"]
        expected[f"init_{name}"] = str(run_dir / "pretraining" / name / "seed0" / "checkpoints" / "last.ckpt")
    for arm in arms:
        job = json.loads((run_dir / "arms" / arm["name"] / "seed0" / "results.json").read_text())
        assert job["init_from"] == expected[arm["name"]] and Path(job["init_from"]).is_file()
    assert "Stage III (Fig. 4e)" in stored["notes"] and "final finetuned models only" in stored["notes"]
    assert "of them planted-degraded); finetuning seed k starts from pretraining seed k" in stored["notes"]
