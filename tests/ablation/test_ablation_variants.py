"""Every other ablation experiment end to end, and the arms that change the training rather than the clips:
caption sources and image-pretrained spatial layers."""

import json
import logging
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from omegaconf import OmegaConf
from test_ablation_task import TWO_STEPS, run_ablation

from data_modules.corpus_table import corpus_clip_rows
from lightning_svd.ablation.recipe import proxy_recipe
from lightning_svd.ablation.variants import (
    SHIPPED_IMAGE_MODELS,
    cached_image_model,
    caption_arms,
    image_model_config,
    pretrained_image_model,
)
from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.models.state_dict_io import read_state_dict, write_state_dict
from lightning_svd.run_context import RunContext
from lightning_svd.stages import STAGES, load_init_weights
from lightning_svd.stages.checkpoints import init_source_weights, released_unet_weights

ONE_SEED = ["ablation.seeds=[0]", "ablation.study.enabled=false"]


def clips(**captions) -> pa.Table:
    return pa.table({"clip_id": ["a", "b"], "status": ["ok", "ok"], **captions})


def test_each_caption_arm_draws_from_its_source_alone():
    table = clips(caption_coca=["c1", "c2"], caption_sidecar=["s1", "s2"])
    arms = caption_arms(table, ["coca", "sidecar", "none"])
    assert [a.name for a in arms] == ["captions_coca", "captions_sidecar", "captions_none"]
    assert all(a.num_clips == 2 and a.removed_fraction == 0.0 for a in arms)
    assert "train.data.caption_probabilities.coca=1.0" in arms[0].proxy_overrides
    assert "train.data.caption_probabilities.sidecar=0.0" in arms[0].proxy_overrides
    assert all(o.endswith("=0.0") for o in arms[2].proxy_overrides)


def test_a_caption_source_no_clip_has_is_an_error_naming_the_captioner():
    with pytest.raises(UserError, match="no clip has a vblip caption"):
        caption_arms(clips(caption_coca=["c1", "c2"], caption_vblip=[None, None]), ["coca", "vblip"])
    with pytest.raises(UserError, match="unknown caption source 'blip'"):
        caption_arms(clips(caption_coca=["c1", "c2"]), ["blip"])


def run_variant(experiment: str, run_dir, *extra: str) -> dict:
    return run_ablation(run_dir, experiment, *ONE_SEED, *extra)


@pytest.mark.parametrize(("experiment", "arm_names"), [
    ("ablation_clip", ["clip_remove_0pct", "clip_remove_50pct"]),
    ("ablation_ocr", ["ocr_remove_0pct", "ocr_remove_50pct"]),
    ("ablation_flow", ["flow_remove_0pct", "flow_remove_50pct"]),
    ("ablation_curation", ["uncurated", "curated"]),
])
def test_every_score_ablation_runs_end_to_end_for_two_steps(experiment, arm_names, tmp_path):
    """With CLIP (random weights, ViT-S-32) and the packaged PP-OCR detector on, as their criteria need."""
    results = run_variant(experiment, tmp_path / "run", "ablation.curation_overrides=[curation.workers=1]")
    assert [a["name"] for a in results["arms"]] == arm_names
    assert all(a["train_steps"] == 2 and a["fvd"] is not None and a["num_clips"] > 0 for a in results["arms"])
    if experiment != "ablation_curation":
        assert results["arms"][1]["num_clips"] == results["arms"][0]["num_clips"] // 2
    assert (tmp_path / "run" / "results.md").read_text().startswith("# Ablation")


def test_caption_ablation_trains_with_and_without_the_corpus_captions_in_two_worker_processes(tmp_path):
    results = run_variant("ablation_captions", tmp_path / "run", "ablation.parallel_jobs=2")
    assert results["criterion"] == "captions"
    assert [a["name"] for a in results["arms"]] == ["captions_sidecar", "captions_none"]
    for arm in results["arms"]:
        config = (tmp_path / "run" / "arms" / arm["name"] / "seed0" / "config.yaml").read_text()
        source = arm["name"].removeprefix("captions_")
        assert f"{source}: 1.0" in config or source == "none"
        assert arm["train_steps"] == 2 and arm["fvd"] is not None
        assert "2 steps, final loss" in (tmp_path / "run" / "arms" / arm["name"] / "seed0" / "job.log").read_text()
    assert "Across the caption sources" in results["notes"]


def test_image_init_arm_starts_from_the_pretrained_image_model(tmp_path):
    run_dir = tmp_path / "run"
    results = run_variant("ablation_image_init", run_dir)
    assert [a["name"] for a in results["arms"]] == ["image_init_off", "image_init_on"]
    cached = Path(results["image_model"]).parents[1]
    image = json.loads((cached / "results.json").read_text())
    assert image["steps"] == 2 and Path(results["image_model"]) == cached / "checkpoints" / "last.ckpt"
    runs = {a["name"]: json.loads((run_dir / "arms" / a["name"] / "seed0" / "results.json").read_text())
            for a in results["arms"]}
    assert runs["image_init_on"]["init_from"] == results["image_model"] and runs["image_init_off"]["init_from"] is None
    checkpoint = torch.load(results["image_model"], weights_only=False)
    pretrained = checkpoint["hyper_parameters"]["stage"]
    assert pretrained["name"] == "image" and pretrained["num_frames"] == 1
    assert "From random to image-pretrained spatial layers" in results["notes"]
    # Shipped in SD's released layout (scripts/ship_image_model.py), it gives back the UNet's EMA weights.
    released = write_state_dict(released_unet_weights(results["image_model"]), tmp_path / "image.safetensors")
    assert all(key.startswith("model.diffusion_model.") for key in read_state_dict(released))
    shadow = checkpoint["ema"]["shadow"]["unet.out.2.weight"]
    assert not torch.equal(shadow, checkpoint["state_dict"]["unet.out.2.weight"])
    assert torch.equal(init_source_weights(released)["denoiser.network.out.2.weight"], shadow)


def test_the_main_job_starts_every_arm_from_the_shipped_image_model(tmp_path, monkeypatch):
    """The tiny recipe's image model takes 15 minutes (its corpus and 6000 steps), longer than the demo may take, so
    it ships with the code under its key. Fails when a change to the tiny recipe or the image corpus changes that key
    (the main job would then train one for 15 minutes): rerun scripts/ship_image_model.py."""
    cfg = load_config("ablation_aesthetic", "tiny", [f"cache_dir={tmp_path / 'cache'}", "ablation.seeds=[2, 3]"])
    monkeypatch.setattr("lightning_svd.training.train", lambda *args: pytest.fail("trained an image model"))
    ctx = RunContext(tmp_path / "run", logging.getLogger("test"))
    shipped = Path(pretrained_image_model(cfg, ctx, None, int(cfg.ablation.image_init.seed)))  # whatever the seeds
    assert shipped.parent == SHIPPED_IMAGE_MODELS and len(list(SHIPPED_IMAGE_MODELS.glob("*.safetensors"))) == 1
    proxy = proxy_recipe(cfg)
    arm = STAGES[proxy.train.name](stage=OmegaConf.to_container(proxy.train, resolve=True))
    counts = load_init_weights(arm, shipped)
    state = arm.state_dict()
    for key, tensor in read_state_dict(shipped).items():
        assert torch.equal(state["unet." + key.removeprefix("model.diffusion_model.")], tensor), key
    assert counts["dropped"] == 0 and counts["copied"] == 2 * len(read_state_dict(shipped))
    sampled_otherwise = load_config("ablation_aesthetic", "tiny", [
        f"cache_dir={tmp_path / 'cache'}", "ablation.proxy.train.diffusion.sampling.guider.scale=3"])
    assert Path(pretrained_image_model(sampled_otherwise, ctx, None, 0)) == shipped  # sampling never retrains
    frames_share_more = load_config("ablation_aesthetic", "tiny", [
        f"cache_dir={tmp_path / 'cache'}", "ablation.proxy.train.diffusion.shared_frame_noise=0.9"])
    assert Path(pretrained_image_model(frames_share_more, ctx, None, 0)) == shipped  # one frame shares nothing
    trained_otherwise = load_config("ablation_aesthetic", "tiny", [
        f"cache_dir={tmp_path / 'cache'}", "ablation.proxy.train.diffusion.noise.p_mean=-1.0"])
    assert image_model_config(trained_otherwise, None, 0).key != Path(shipped).stem


def test_an_interrupted_image_pretraining_resumes_from_its_checkpoint(small_corpus, tmp_path):
    subset = pa.Table.from_pylist(corpus_clip_rows(small_corpus))
    cfg = load_config("ablation_aesthetic", "tiny", [f"cache_dir={tmp_path / 'cache'}", "ablation.seeds=[0]",
                                                     "ablation.image_init.data=subset"])
    cfg.ablation.extra_proxy_overrides.extend([*TWO_STEPS, "train.checkpoint_every_n_steps=1"])
    ctx = RunContext(tmp_path / "run", logging.getLogger("test"))
    first = pretrained_image_model(cfg, ctx, subset, seed=0)
    cached = Path(first).parents[1]
    assert json.loads((cached / "results.json").read_text())["resumed_from"] is None
    work = cached.with_name(f".{cached.name}.work")
    cached.rename(work)  # killed after its last checkpoint, before the cache entry was published
    assert pretrained_image_model(cfg, ctx, subset, seed=0) == first and not work.exists()
    resumed = json.loads((cached / "results.json").read_text())["resumed_from"]
    assert resumed == str(work / "checkpoints" / "last.ckpt")
    assert pretrained_image_model(cfg, ctx, subset.slice(1), seed=0) != first  # other clips: another model
    cfg.cache_dir = str(tmp_path / "another_cache")
    elsewhere = Path(pretrained_image_model(cfg, ctx, subset, seed=0))
    assert elsewhere != Path(first) and elsewhere.parents[1].name == Path(first).parents[1].name


def test_the_image_model_batch_fits_the_subset(small_corpus, tmp_path, monkeypatch):
    subset = pa.Table.from_pylist(corpus_clip_rows(small_corpus)).slice(0, 3)
    cfg = load_config("ablation_aesthetic", "tiny", [f"cache_dir={tmp_path / 'cache'}",
                                                     "ablation.image_init.data=subset"])
    cfg.ablation.extra_proxy_overrides.extend(["trainer.max_steps=1", "trainer.log_every_n_steps=1"])
    seen = {}

    def record(image, ctx):
        seen.update(batch=image.train.data.batch_size, steps=image.trainer.max_steps)
        raise RuntimeError("stop after the config")

    monkeypatch.setattr("lightning_svd.training.train", record)
    with pytest.raises(RuntimeError, match="stop after the config"):
        pretrained_image_model(cfg, RunContext(tmp_path / "run", logging.getLogger("test")), subset, seed=0)
    assert seen == {"batch": 3, "steps": 1}  # 3 clips < batch 32; extra overrides come last


def test_the_image_model_trains_on_a_clean_corpus_of_its_own(small_corpus, tmp_path, monkeypatch):
    """SD 2.1 never saw the video subset: by default the stand-in trains on a corpus of its own (another seed, no
    planted degradation, the ablation corpus' look), keyed by that corpus, so every subset and arm shares it (the
    training path; the tiny recipe's model also ships with the code)."""
    subset = pa.Table.from_pylist(corpus_clip_rows(small_corpus))
    cfg = load_config("ablation_aesthetic", "tiny", [f"cache_dir={tmp_path / 'cache'}"])
    seen = []

    def record(image, ctx):
        seen.append((image.train.data.table, dict(image.corpus), image.run_dir))
        raise RuntimeError("stop after the config")

    monkeypatch.setattr("lightning_svd.training.train", record)
    for clips in (subset, subset.slice(1)):
        with pytest.raises(RuntimeError, match="stop after the config"):
            cached_image_model(cfg, RunContext(tmp_path / "run", logging.getLogger("test")), clips,
                               image_model_config(cfg, clips, seed=0))
    (table, corpus, first_dir), (_, _, second_dir) = seen
    assert table is None and first_dir == second_dir
    assert corpus["seed"] == cfg.ablation.image_init.corpus.seed != cfg.corpus.seed
    assert corpus["degraded_fraction"] == 0.0 and corpus["texture"] == cfg.corpus.texture
    cfg.ablation.image_init.data = "elsewhere"
    with pytest.raises(UserError, match="ablation.image_init.data='elsewhere'; choose one of corpus, subset"):
        pretrained_image_model(cfg, RunContext(tmp_path / "run", logging.getLogger("test")), subset, seed=0)
