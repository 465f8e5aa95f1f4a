"""The stage III curation ablation (paper section 3.4, Fig. 4e): does curated video pretraining still pay after
high-quality finetuning? Three initialisations, each finetuned the same way on one high-quality set: the image
model (no video pretraining), a video model pretrained on curated clips and one pretrained on uncurated clips.

- The two video models: given checkpoints (`ablation.stage3.curated_checkpoint` / `uncurated_checkpoint`; the
  paper profile's 50M-clip models, one each for every seed), or, where neither is given, pretrained in the run per
  seed on the curation ablation's arms of the subset (the combined filter's clips and a random subset of equal
  size), with the proxy recipe, from the image model: what `ablation_curation` trains. Finetuning arm-seed k starts
  from the pretraining of seed k.
- The high-quality set: the subset's top `ablation.stage3.hq.keep_fraction` by one score, or the whole subset
  (the paper profile's clip table is the 250K high-quality clips).
- The finetuning recipe: `ablation.stage3.finetune` over the proxy recipe (paper E.2.3: 512x512, 50k steps).
"""

from pathlib import Path

import pyarrow as pa
from omegaconf import OmegaConf

from data_modules.arms import CRITERIA, Arm, threshold_arms
from lightning_svd import training
from lightning_svd.ablation.data import GroundTruth, curation_arms, write_arm_table
from lightning_svd.ablation.recipe import proxy_recipe
from lightning_svd.errors import UserError
from lightning_svd.run_context import RunContext

STAGE3 = "stage3_init"
PRETRAINING = "pretraining"  # under the run dir: <curation arm>/seed<k>/, the video pretrainings made in the run
VIDEO_INITS = ("uncurated", "curated")  # the names of ablation_curation's arms, which pretrain them
RESULTS = "results.json"  # a finished training's record (training.train writes it last)


def check_stage3(section) -> None:
    """The stage III settings, before any curation runs."""
    stage3 = section.stage3
    if stage3.hq.criterion not in CRITERIA:
        raise UserError(f"unknown ablation.stage3.hq.criterion {stage3.hq.criterion!r}; valid: {', '.join(CRITERIA)}")
    keep = stage3.hq.keep_fraction
    if keep is not None and not 0 < float(keep) <= 1:
        raise UserError(f"ablation.stage3.hq.keep_fraction={keep}: give a fraction in (0, 1], or null for the whole "
                        "subset")
    given_video_models(stage3, check_files=False)


def given_video_models(stage3, check_files: bool = True) -> dict[str, str] | None:
    """The two given video checkpoints by init name, or None where neither is given (pretrain both here)."""
    given = {name: stage3[f"{name}_checkpoint"] for name in VIDEO_INITS}
    if not any(given.values()):
        return None
    unset = [f"ablation.stage3.{name}_checkpoint" for name, value in given.items() if not value]
    if unset:
        raise UserError(f"{unset[0]} is not set: give both video checkpoints of the stage III ablation, or neither "
                        "to pretrain both in the run")
    paths = {name: Path(str(value)).expanduser() for name, value in given.items()}
    for name, path in paths.items():
        if check_files and not path.exists():
            raise UserError(f"ablation.stage3.{name}_checkpoint {path} not found; give a video-pretrained proxy "
                            "checkpoint, or null (both) to pretrain them in the run")
    return {name: str(path) for name, path in paths.items()}


def high_quality_set(subset: pa.Table, hq, seed: int) -> Arm:
    """The clips every stage III arm finetunes on: the subset's top `hq.keep_fraction` by `hq.criterion` (the
    worst removed as the threshold ablations remove them), or the whole subset where keep_fraction is null."""
    if hq.keep_fraction is None:
        return Arm("high_quality", STAGE3, 0.0, None, subset)
    return threshold_arms(subset, str(hq.criterion), [1.0 - float(hq.keep_fraction)], seed)[0]


def pretrain_video_models(cfg, ctx, subset: pa.Table, init_from: str | None) -> dict[str, str]:
    """Pretrain a proxy on each curation arm of the subset, once per seed, under `<run_dir>/pretraining/`, and
    return each arm's checkpoint with `${seed}` in its path: the proxy config's own seed picks the pretraining of
    the finetuning arm-seed's seed. A finished pretraining (its results.json) is kept; an interrupted one resumes
    from its last checkpoint."""
    section = cfg.ablation
    arms = {arm.name: arm for arm in curation_arms(subset, int(section.subset.seed))}
    root = Path(ctx.run_dir) / PRETRAINING
    batch = min(int(proxy_recipe(cfg).train.data.batch_size), *(arm.num_clips for arm in arms.values()))
    overrides = (f"init_from={init_from or 'null'}", f"train.data.batch_size={batch}")
    for name in VIDEO_INITS:
        table = write_arm_table(arms[name].table, root / name / "clips.parquet")
        for seed in (int(s) for s in section.seeds):
            out = root / name / f"seed{seed}"
            if (out / RESULTS).is_file():
                ctx.log.info(f"video pretraining {name} seed {seed}: done before, kept")
                continue
            proxy = proxy_recipe(cfg, arm_overrides=overrides)
            proxy.train.data.table, proxy.seed, proxy.run_dir = str(table), seed, str(out)
            proxy.cache_dir, proxy.resume = cfg.cache_dir, True
            out.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(proxy, out / "config.yaml", resolve=True)
            ctx.log.info(f"video pretraining {name} seed {seed}: {proxy.trainer.max_steps} steps on "
                         f"{arms[name].num_clips} clips -> {out}")
            training.train(proxy, RunContext(out, ctx.log))  # one at a time, on the ablation process' threads
    return {name: str(training.last_checkpoint(root / name / "seed${seed}")) for name in VIDEO_INITS}


def stage3_arms(hq: Arm, image_model: str, video_models: dict[str, str]) -> list[Arm]:
    """The three initialisations on the same clips, from the paper's last-ranked (image) to its first (curated)."""
    inits = {"image": image_model, **video_models}
    return [Arm(f"init_{name}", STAGE3, hq.removed_fraction, hq.threshold, hq.table, (f"init_from={inits[name]}",))
            for name in ("image", *VIDEO_INITS)]


def build_stage3_arms(cfg, ctx, subset: pa.Table, image_model: str) -> list[Arm]:
    """The high-quality set and the three arms, pretraining the video models first where none are given (from the
    image model, or random weights with `ablation.image_init.every_arm=false`)."""
    section = cfg.ablation
    hq = high_quality_set(subset, section.stage3.hq, int(section.subset.seed))
    video_models = given_video_models(section.stage3)
    if video_models is None:
        video_models = pretrain_video_models(cfg, ctx, subset,
                                             image_model if section.image_init.every_arm else None)
    return stage3_arms(hq, image_model, video_models)


def stage3_note(section, subset: pa.Table, truth: GroundTruth) -> str:
    """Where each initialisation came from, what the arms finetuned on, and what is not evaluated. Where the video
    models were pretrained here on clips with ground truth, how degraded each pretraining set was: the difference
    the ablation can show at most."""
    stage3, seed = section.stage3, int(section.subset.seed)
    hq = stage3.hq
    kept = high_quality_set(subset, hq, seed).num_clips
    data = (f"the subset's top {float(hq.keep_fraction):.0%} by {hq.criterion} score ({kept} of {subset.num_rows} "
            "clips)" if hq.keep_fraction is not None else f"the whole subset ({kept} clips)")
    if given_video_models(stage3, check_files=False) is None:
        arms = curation_arms(subset, seed)
        source = (f"pretrained in this run (pretraining/<arm>/seed<k>/) with the proxy recipe on the curation "
                  f"ablation's arms of the subset ({arms[0].num_clips} clips each: the combined filter's clips and a "
                  "random subset of equal size")
        shares = [truth.degraded_share(arm.table) for arm in arms]
        if None not in shares:
            source += f"; {shares[1]:.0%} and {shares[0]:.0%} of them planted-degraded"
        source += "); finetuning seed k starts from pretraining seed k"
    else:
        source = ("the given checkpoints ablation.stage3.curated_checkpoint and uncurated_checkpoint, the same for "
                  "every seed")
    return (f"Stage III (Fig. 4e): every arm finetunes with ablation.stage3.finetune on {data}, from the image model "
            f"(init_image, no video pretraining) or a video model pretrained on curated or uncurated clips, {source}. "
            "The paper also rates the 10k-step checkpoint; this run evaluates the final finetuned models only (with "
            "the paper profile's constant learning rate, ablation.stage3.finetune.trainer.max_steps=10000 runs the "
            "same recipe stopped there).")
