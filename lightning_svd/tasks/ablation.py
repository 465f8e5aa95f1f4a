"""Task `ablation`: the paper's curation ablations end to end (section 3, `ablation.*` in defaults.yaml).

curation (cached) -> held-out clean real clips -> random subset (the paper's LVD-10M) -> the image model every
proxy starts from (SD 2.1 in the paper; tiny: an image-only proxy trained on clean data of its own, cached) ->
the arms of `ablation.criterion` (threshold arms per score, curated vs uncurated, caption sources, image init, the
stage III initialisations) ->
per arm and seed: train the proxy (`ablation.proxy_experiment` with the `ablation.proxy` recipe) into
`<run_dir>/arms/<arm>/seed<k>/`, sample the fixed prompts, FVD and the judge's degraded-looking share -> one
study pack of every sample under `<run_dir>/study/` (simulated raters vote on it) -> an `AblationResult`
(lightning_svd/ablation/results.py) written as results.json / results.md, HParams and samples per arm, a plot.
The parts live in the library lightning_svd/ablation/; this module orchestrates them.

Resume: run again with `run_dir=<the interrupted run>`; an arm-seed with a `done.json` is not retrained, one
without resumes from its `checkpoints/last.ckpt`. Where `<run_dir>/study/votes.sqlite` holds votes, their Elo
joins the table.
"""

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from data_modules.arms import CRITERIA, random_subset, threshold_arms
from lightning_svd.ablation.data import (
    GroundTruth,
    Split,
    cached_curation,
    curation_arms,
    curation_config,
    fixed_prompts,
    heldout_split,
    write_arm_table,
)
from lightning_svd.ablation.evaluate import (
    ArmEvaluator,
    frame_difference,
    prompt_colour_distances,
    prompt_following,
    prompt_real_clips,
    real_frame_difference,
    shape_check,
)
from lightning_svd.ablation.job import (
    SAMPLES,
    TRAINED,
    WORKER_LOG,
    parent_threads,
    torch_threads,
    train_and_sample,
    write_job,
)
from lightning_svd.ablation.judge import build_judge
from lightning_svd.ablation.recipe import proxy_recipe
from lightning_svd.ablation.results import AblationResult, ArmResult, ProxyShape, SeedResult
from lightning_svd.ablation.stage3 import STAGE3, build_stage3_arms, check_stage3, stage3_note
from lightning_svd.ablation.summary import (
    final_logged_mean,
    honest_notes,
    render_markdown,
    sample_check_note,
    write_hparams,
    write_plot,
    write_sample_grid,
    write_sample_images,
)
from lightning_svd.ablation.variants import (
    IMAGE_DATA,
    caption_arms,
    check_caption_sources,
    image_init_arms,
    pretrained_image_model,
)
from lightning_svd.clip_table import read_clip_table
from lightning_svd.config import check_required_paths, load_config
from lightning_svd.diffusion import build_diffusion
from lightning_svd.errors import UserError
from lightning_svd.evaluation.extractors import build_extractor
from lightning_svd.stages.base import without_unset_keys
from lightning_svd.tasks import curate

DONE = "done.json"
REPO = Path(__file__).resolve().parents[2]
PLOT = "ablation.png"
SAMPLE_GRID = "samples.png"


def proxy_config(cfg, table: Path, seed: int, run_dir: Path, arm_overrides=()):
    """The proxy's training config for one arm and seed: the recipe (`proxy_recipe`, finetuning for stage III) with
    what the arm changes, on the arm's table."""
    proxy = proxy_recipe(cfg, arm_overrides=arm_overrides, finetune=str(cfg.ablation.criterion) == STAGE3)
    proxy.train.data.table, proxy.seed, proxy.run_dir = str(table), seed, str(run_dir)
    proxy.cache_dir, proxy.resume = cfg.cache_dir, True
    if cfg.profile == "paper":
        if proxy.init_from is None and "init_from" in proxy.requires_paths:
            proxy.requires_paths = [key for key in proxy.requires_paths if key != "init_from"]  # random init arm
        check_required_paths(proxy)
    return proxy


def job_dir(ctx, arm_name: str, seed: int) -> Path:
    return Path(ctx.run_dir) / "arms" / arm_name / f"seed{seed}"


def run_jobs(cfg, ctx, jobs: list[tuple], prompts: list[dict]) -> None:
    """Train and sample every (arm, table, seed) without a done marker, `ablation.parallel_jobs` at a time."""
    section = cfg.ablation
    pending = []
    for arm, table, seed in jobs:
        out = job_dir(ctx, arm.name, seed)
        if (out / DONE).is_file():
            ctx.log.info(f"{arm.name} seed {seed}: done before, not retrained")
            continue
        if not (out / TRAINED).is_file():
            proxy = proxy_config(cfg, table, seed, out, arm.proxy_overrides)
            write_job(out, proxy, prompts, int(section.sampling.samples_per_prompt), int(section.sampling.steps),
                      section.torch_threads)
            ctx.log.info(f"{arm.name} seed {seed}: training {proxy.trainer.max_steps} steps -> {out}")
        pending.append((f"{arm.name} seed {seed}", out))
    if int(section.parallel_jobs) <= 1:
        for _, out in pending:
            train_and_sample(out, ctx.log)
    else:
        run_in_workers(pending, int(section.parallel_jobs), ctx.log)


def run_in_workers(pending: list[tuple[str, Path]], parallel: int, log) -> None:
    """`parallel` worker processes (`python -m lightning_svd.ablation.job`) take the arm-seeds in turn. A failed
    job stops new ones, lets the running ones finish (their work is kept for the resume) and is reported; an
    interrupt stops the workers at once (an unfinished job resumes from its last checkpoint)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    jobs, failed, stop = queue.SimpleQueue(), [], threading.Event()
    for job in pending:
        jobs.put(job)

    def work(worker: subprocess.Popen, progress) -> None:
        try:
            while not stop.is_set():
                try:
                    name, out = jobs.get_nowait()
                except queue.Empty:
                    break
                try:
                    worker.stdin.write(f"{out}\n")
                    worker.stdin.flush()
                    reply = worker.stdout.readline().strip()
                except OSError:  # the worker is gone
                    reply = ""
                progress.update()
                if reply != "ok":
                    worker_log = out / WORKER_LOG
                    failed.append(f"{name} ({last_line(worker_log)}; see {worker_log})")
                    stop.set()
                    break
                log.info(f"{name}: trained and sampled")
        finally:
            with contextlib.suppress(OSError):
                worker.stdin.close()
            worker.wait()

    workers = [subprocess.Popen([sys.executable, "-m", "lightning_svd.ablation.job"], env=env, cwd=REPO,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(min(parallel, len(pending)))]
    with tqdm(total=len(pending), desc="arm-seeds trained", unit="job") as progress:
        threads = [threading.Thread(target=work, args=(worker, progress)) for worker in workers]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        except BaseException:
            stop.set()
            for worker in workers:
                worker.terminate()
            raise
    if failed:
        raise UserError(f"ablation jobs failed: {'; '.join(failed)}; fix the cause and run again with the "
                        "same run_dir= to resume")


def last_line(log_file: Path) -> str:
    """The last non-empty line a failed worker wrote: the exception that stopped it."""
    if not log_file.is_file():
        return "the worker stopped before writing its log"
    lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def evaluate_job(ctx, arm_name: str, seed: int, evaluator, judge) -> dict:
    """FVD and the detector's degraded share of a trained arm-seed's samples; the done marker makes this happen
    once."""
    out = job_dir(ctx, arm_name, seed)
    if (out / DONE).is_file():
        return json.loads((out / DONE).read_text())
    trained = json.loads((out / TRAINED).read_text())
    videos = np.load(out / SAMPLES)
    fvd = evaluator.fvd(videos) if evaluator is not None else None
    final_loss = final_logged_mean(out / "tensorboard", "train/loss")
    if final_loss is None:
        final_loss = trained["final_loss"]
    record = {"arm": arm_name, "seed": seed, "train_steps": trained["train_steps"], "final_loss": final_loss,
              "fvd": None if fvd is None else round(fvd["fvd"], 6), "fvd_detail": fvd,
              "degraded_sample_share": None if judge is None else round(judge.degraded_share(videos), 6),
              "num_generated": len(videos), "checkpoint": trained["checkpoint"],
              "resumed_from": trained["resumed_from"]}
    partial = out / f".{DONE}.partial"
    partial.write_text(json.dumps(record, indent=1, default=str))
    partial.replace(out / DONE)
    shown = "" if judge is None else f", degraded-looking samples {record['degraded_sample_share']:.0%}"
    ctx.log.info(f"{arm_name} seed {seed}: final loss {record['final_loss']}, FVD {record['fvd']}{shown}")
    return record


def pack_prompt_id(prompt_id: str, seed: int, sample: int) -> str:
    """Every sample is its own pack prompt, so raters compare arms on matched samples (same prompt, seed, noise)."""
    return f"{prompt_id}-s{seed}-k{sample}"


def write_study_pack(run_dir: Path, samples: dict[str, list[np.ndarray]], prompts: list[dict], seeds: list[int],
                     fps: int) -> Path:
    """Every sample the numbers were computed on: one pack prompt per (prompt, seed, sample), each video naming its
    seed and sample, so a rater or an outside check judges exactly what was measured."""
    from lightning_svd.preference.pack import write_pack

    pack_prompts, videos, meta = [], {}, {}
    for seed_index, seed in enumerate(seeds):
        repetitions = len(next(iter(samples.values()))[seed_index]) // len(prompts)
        for sample in range(repetitions):
            for index, prompt in enumerate(prompts):
                pack_id = pack_prompt_id(prompt["id"], seed, sample)
                pack_prompts.append({"id": pack_id, "text": prompt["text"]})
                for arm, per_seed in samples.items():
                    videos[(arm, pack_id)] = per_seed[seed_index][sample * len(prompts) + index]
                    meta[(arm, pack_id)] = {"seed": seed, "sample": sample}
    return write_pack(run_dir / "study", pack_prompts, videos, fps, arms=list(samples), video_meta=meta)


def elo_from_votes(pack_root: Path) -> dict[str, float]:
    """Each arm's Elo (votes of both questions pooled) where the pack's vote database exists and holds votes."""
    from lightning_svd.preference.pack import StudyPack
    from lightning_svd.preference.results import AGGREGATE
    from lightning_svd.preference.service import PreferenceStudy
    from lightning_svd.preference.settings import StudySettings
    from lightning_svd.preference.store import DEFAULT_DB_NAME

    db = pack_root / DEFAULT_DB_NAME
    if not db.is_file():
        return {}
    results = PreferenceStudy.open(StudyPack.load(pack_root), db, StudySettings()).results()
    if not results["votes"]["counted"]:
        return {}
    return {arm: round(entry["elo"], 2) for arm, entry in results["rankings"][AGGREGATE]["arms"].items()}


def simulated_elo(section, pack_root: Path, samples: dict[str, list[np.ndarray]], prompts: list[dict],
                  seeds: list[int], judge, prompt_clips: np.ndarray) -> tuple[dict, dict[str, list[float]]]:
    """The simulated rater panel on the study pack, through the preference app's store and rankings: the pooled
    ranking, and each arm's Elo gain over the lowest arm from each seed's votes alone (its seed-to-seed spread)."""
    from lightning_svd.preference.pack import StudyPack
    from lightning_svd.preference.results import AGGREGATE, compute_results
    from lightning_svd.preference.settings import StudySettings
    from lightning_svd.preference.simulated import run_simulated_panel
    from lightning_svd.preference.store import VoteStore

    scores = {}
    for seed_index, seed in enumerate(seeds):
        for arm, per_seed in samples.items():
            judged = judge.scores(per_seed[seed_index], prompt_clips)
            for position in range(len(per_seed[seed_index])):
                pack_id = pack_prompt_id(prompts[position % len(prompts)]["id"], seed, position // len(prompts))
                scores[(arm, pack_id)] = {question: float(values[position]) for question, values in judged.items()}
    standardised = {}
    for question in ("quality", "prompt_following"):
        values = np.array([entry[question] for entry in scores.values()])
        scale = values.std() or 1.0
        for key, entry in scores.items():
            standardised.setdefault(key, {})[question] = entry[question] / scale
    votes_per_pair, seed = int(section.votes_per_pair), int(section.seed)
    panel = run_simulated_panel(pack_root, standardised, votes_per_pair=votes_per_pair,
                                temperature=float(section.temperature), seed=seed)
    pack = StudyPack.load(pack_root)
    votes = VoteStore(panel.db_path).votes()
    settings = StudySettings(votes_per_pair=votes_per_pair, attention_check_rate=0.0, seed=seed)
    per_seed_gain = {arm: [] for arm in samples}
    for chosen in seeds:
        mine = [v for v in votes if pack.videos[(v.task.arm_a, v.task.prompt_id)].seed == chosen]
        ranking = compute_results(pack, mine, settings)["rankings"][AGGREGATE]["arms"]
        for arm in samples:
            per_seed_gain[arm].append(round(float(ranking[arm]["elo_gain"]), 2))
    return panel.to_dict(), per_seed_gain


def check(cfg) -> None:
    """Settings that would fail after minutes of curation fail before anything is written."""
    section = cfg.ablation
    criteria = [*CRITERIA, *ORDERINGS]
    if section.criterion not in criteria:
        raise UserError(f"unknown ablation.criterion {section.criterion!r}; valid: {', '.join(criteria)}")
    if len(section.seeds) < 1:
        raise UserError("ablation.seeds must list at least one seed (two give the seed-to-seed spread)")
    if len(section.removed_fractions) < 1:
        raise UserError("ablation.removed_fractions must list at least one fraction, e.g. [0.0, 0.125, 0.25, 0.5]")
    if section.subset.engine != "memory":
        raise UserError(f"ablation.subset.engine={section.subset.engine}: the ablation draws its subset in memory; "
                        "the streaming and ray engines are experiment=build_arms's")
    extractors = ("domain", "random", "i3d_torchscript")
    if section.fvd.extractor not in extractors:
        raise UserError(f"unknown ablation.fvd.extractor {section.fvd.extractor!r}; valid: {', '.join(extractors)}")
    if section.image_init.data not in IMAGE_DATA:
        raise UserError(f"ablation.image_init.data={section.image_init.data!r}; choose one of {', '.join(IMAGE_DATA)}")
    if section.criterion == "captions":
        check_caption_sources([str(source) for source in section.captions.sources])
    if section.criterion == STAGE3:
        check_stage3(section)
    if not section.clip_table:
        curation_config(cfg)  # its overrides, and a split mode the arms could not train on
    as_defined = load_config(cfg.experiment, cfg.profile, check_paths=False)
    for key in ("train", "trainer"):
        if cfg[key] != as_defined[key]:
            raise UserError(f"an ablation's proxies do not read {key}.*: set the recipe's keys as ablation.proxy.*, "
                            "e.g. ablation.proxy.trainer.max_steps=100, and other settings in ablation."
                            "extra_proxy_overrides, e.g. ablation.extra_proxy_overrides=[train.ema.enabled=true]")
    arms_recipe = proxy_recipe(cfg, finetune=section.criterion == STAGE3)
    build_diffusion(without_unset_keys(arms_recipe.train.diffusion))  # its values, e.g. a shared_frame_noise 1
    image_model_needed = section.criterion in ("image_init", STAGE3) or section.image_init.every_arm
    if image_model_needed and not section.image_init.checkpoint:
        if cfg.profile == "paper":
            raise UserError("the paper's proxies start from SD 2.1: give ablation.image_init.checkpoint (SD 2.1 "
                            "as an ldm .ckpt / .safetensors or a diffusers folder, or an image stage's run dir), "
                            "or set ablation.image_init.every_arm=false to train them from random weights")
        proxy_recipe(cfg, image=True)


ORDERINGS = {"curation": "From the uncurated to the curated arm",
             "captions": "Across the caption sources (in ablation.captions.sources order)",
             "image_init": "From random to image-pretrained spatial layers",
             STAGE3: "From the image-model init to the uncurated- and the curated-pretrained init"}


def build_arms(cfg, ctx, subset) -> tuple[list, str | None]:
    """The arms of `ablation.criterion`: threshold arms per score, curated vs uncurated, caption sources,
    random vs image-pretrained spatial layers, or stage III's three initialisations (`build_stage3_arms`). With
    `ablation.image_init.every_arm` every arm starts from the image model (the paper's proxies start from SD 2.1,
    section 3.1); only image_init's "off" arm starts random. Returns the arms and the image model's checkpoint (None
    when every arm starts random)."""
    section = cfg.ablation
    criterion = str(section.criterion)
    image_model = None
    if criterion in ("image_init", STAGE3) or section.image_init.every_arm:
        image_model = pretrained_image_model(cfg, ctx, subset, int(section.image_init.seed))
    if criterion == "image_init":
        return image_init_arms(subset, image_model), image_model
    if criterion == STAGE3:
        return build_stage3_arms(cfg, ctx, subset, image_model), image_model
    if criterion == "curation":
        arms = curation_arms(subset, int(section.subset.seed))
    elif criterion == "captions":
        arms = caption_arms(subset, [str(s) for s in section.captions.sources])
    else:
        arms = threshold_arms(subset, criterion, list(section.removed_fractions), int(section.subset.seed))
    if image_model is not None:
        arms = [replace(arm, proxy_overrides=(f"init_from={image_model}", *arm.proxy_overrides)) for arm in arms]
    return arms, image_model


def fit_batch_to_arms(arms: list, batch_size: int) -> tuple[list, str | None]:
    """Arms smaller than one batch would train no step: every arm then trains with the smallest arm's size as its
    batch, so the arms still differ only in their clips. Returns the arms and a note saying so (None if unchanged)."""
    smallest = min(arm.num_clips for arm in arms)
    if smallest < 1:
        empty = ", ".join(arm.name for arm in arms if arm.num_clips == 0)
        raise UserError(f"arm(s) {empty} have no clips: use a larger subset (ablation.subset) or a gentler filter")
    if smallest >= batch_size:
        return arms, None
    override = f"train.data.batch_size={smallest}"
    note = (f"Every arm trained with batch {smallest}, not {batch_size}: the smallest arm has only {smallest} "
            "clips.")
    return [replace(arm, proxy_overrides=(*arm.proxy_overrides, override)) for arm in arms], note


def run(cfg, ctx) -> dict:
    check(cfg)
    with torch_threads(parent_threads(cfg.ablation)):
        return run_ablation(cfg, ctx).to_dict()


@dataclass
class Plan:
    """What every arm shares, decided before any proxy trains."""

    clip_table: Path
    split: Split
    subset_size: int
    arms: list
    image_model: str | None
    batch_note: str | None
    prompts: list[dict]
    shape: ProxyShape
    truth: GroundTruth
    arms_note: str | None = None  # where the arms' training came from, beside their clips (stage III's inits)


def plan_arms(cfg, ctx, seeds: list[int]) -> Plan:
    """Curation (cached) -> held-out real clips -> the random subset -> the arms and the prompts they sample."""
    section = cfg.ablation
    clip_table = cached_curation(cfg, ctx.log, curate.run)
    table = read_clip_table(clip_table)
    proxy = proxy_config(cfg, Path(clip_table), seeds[0], Path(ctx.run_dir))
    shape = ProxyShape(str(section.proxy_experiment), int(proxy.train.num_frames), int(proxy.train.height),
                       int(proxy.train.width), int(section.sampling.steps))
    held, truth = section.heldout, GroundTruth()
    split = heldout_split(table, int(held.seed), float(held.video_fraction), bool(held.clean_only),
                          int(held.max_clips), shape.num_frames, truth)
    subset = random_subset(split.train_pool, int(section.subset.seed), size=section.subset.size,
                           fraction=section.subset.fraction)
    arms, image_model = build_arms(cfg, ctx, subset)
    arms, batch_note = fit_batch_to_arms(arms, int(proxy.train.data.batch_size))
    if batch_note:
        ctx.log.warning(batch_note)
    prompts = fixed_prompts(section.prompts.file, int(section.prompts.count), split.real)
    arms_note = stage3_note(section, subset, truth) if str(section.criterion) == STAGE3 else None
    ctx.log.info(f"{table.num_rows} curated clips; {split.real.num_rows} held-out real clips from "
                 f"{len(split.heldout_videos)} videos; subset of {subset.num_rows}; arms "
                 + ", ".join(f"{a.name} ({a.num_clips})" for a in arms) + f"; {len(prompts)} prompts")
    return Plan(Path(clip_table), split, subset.num_rows, arms, image_model, batch_note, prompts, shape, truth,
                arms_note)


def train_arms(cfg, ctx, plan: Plan, seeds: list[int]) -> None:
    """Every arm's clips into its folder, then every arm-seed trained and sampled."""
    jobs = []
    for arm in plan.arms:
        arm_table = write_arm_table(arm.table, Path(ctx.run_dir) / "arms" / arm.name / "clips.parquet")
        jobs += [(arm, arm_table, seed) for seed in seeds]
    run_jobs(cfg, ctx, jobs, plan.prompts)


def build_evaluator(cfg, split: Split, judge, shape: ProxyShape):
    """FVD against the held-out real clips with `ablation.fvd.extractor`: the domain network (tiny: the judge's
    features), random features (labelled), or the paper's I3D; None when FVD is off."""
    section = cfg.ablation.fvd
    if not section.enabled:
        return None
    kind = str(section.extractor)
    if kind == "domain":
        if judge is None:
            raise UserError("ablation.fvd.extractor=domain needs clips with synthetic ground truth (the domain "
                            "network learns from it); use i3d_torchscript or random for other footage")
        extractor = judge.net
    else:
        extractor = build_extractor({"kind": kind, **OmegaConf.to_container(section[kind], resolve=True)})
    return ArmEvaluator(extractor, split.real, int(cfg.ablation.heldout.windows_per_clip), shape.num_frames,
                        shape.height, shape.width, str(cfg.cache_dir))


def rate_samples(section, pack: Path | None, samples: dict[str, list[np.ndarray]], prompts: list[dict],
                 seeds: list[int], judge, prompt_clips: np.ndarray) -> tuple[dict | None, dict[str, list[float]]]:
    """The simulated rater panel and each arm's per-seed Elo gain, where a pack, a judge and the panel are on."""
    if pack is None or judge is None or not section.simulated_raters.enabled:
        return None, {}
    return simulated_elo(section.simulated_raters, pack, samples, prompts, seeds, judge, prompt_clips)


def arm_result(arm, records: list[dict], gains: list[float] | None, samples: list[np.ndarray],
               prompt_clips: np.ndarray, elo: float | None, truth: GroundTruth) -> ArmResult:
    """One arm's result from its seeds' done records, their simulated Elo gains and their samples."""
    gains = gains or [None] * len(records)
    seeds = [SeedResult(r["seed"], r["train_steps"], r["final_loss"], r["fvd"], r.get("degraded_sample_share"), gain)
             for r, gain in zip(records, gains, strict=True)]
    pooled = np.concatenate(samples)
    own, others = prompt_colour_distances(pooled, prompt_clips)
    following = prompt_following(pooled, prompt_clips)
    shapes = shape_check(pooled, prompt_clips)
    share = truth.degraded_share(arm.table)
    return ArmResult.over_seeds(
        seeds, name=arm.name, removed_fraction=arm.removed_fraction, num_clips=arm.num_clips,
        threshold=arm.threshold, degraded_share=None if share is None else round(share, 4), elo=elo,
        sample_frame_difference=frame_difference(samples[0]), prompt_colour_distance=round(own, 2),
        other_prompts_colour_distance=None if others is None else round(others, 2),
        prompt_following=None if following is None else round(following, 4),
        prompt_shapes=None if shapes is None else round(shapes[0], 4),
        other_prompts_shapes=None if shapes is None else round(shapes[1], 4))


def ablation_notes(cfg, plan: Plan, arms: list[ArmResult], evaluator, judge, panel: dict | None,
                   seed: int, real_shapes: tuple[float, float] | None) -> list[str]:
    """What moved and by how much against the seed spread, what judged the samples, and checks of the samples."""
    labels = evaluator.metric.labels() if evaluator is not None else {}
    ordering = ORDERINGS.get(str(cfg.ablation.criterion), "As the removed fraction grows")
    notes = honest_notes(arms, labels.get("comparable", True), labels.get("reason"), ordering)
    if judge is not None:
        notes.append(f"Degraded-looking samples are judged by a {judge.describe()}; it never saw a curation "
                     "score, and the same network gives the domain FVD's features.")
    if panel is not None:
        notes.append(f"Elo gain comes from {panel['label']} (no person voted): a panel of "
                     f"{panel['votes_per_pair']} automatic raters per pair, judging visual quality by the domain "
                     "network's P(degraded) and prompt following by feature distance to the prompt's real clip, "
                     "cast every pairwise vote on the study pack through the preference app (Elo K = 1 over 1000 "
                     "orders); the spread is over the seeds' votes.")
    if plan.arms_note:
        notes.append(plan.arms_note)
    if plan.batch_note:
        notes.append(plan.batch_note)
    if len(plan.prompts) > 1:
        notes.append("Prompt check: the samples' mean colours lie " + ", ".join(
            f"{a.prompt_colour_distance:.0f}" for a in arms) + " (RGB distance, 0-441, per arm) from the real clip "
            "of their own prompt and " + ", ".join(f"{a.other_prompts_colour_distance:.0f}" for a in arms)
            + " from those of the other prompts; nearer their own means the proxies follow the prompts' colours. "
            "Prompt following (a sample nearest its own prompt's clip among the prompts'): " + ", ".join(
            f"{100 * a.prompt_following:.0f} %" for a in arms) + f" per arm, chance {100 / len(plan.prompts):.0f} %.")
    if real_shapes is not None and arms and arms[0].prompt_shapes is not None:
        notes.append("Shape check: " + ", ".join(f"{100 * a.prompt_shapes:.0f} %" for a in arms) + " of the "
                     "samples' frames (per arm) show a shape-sized region in their own prompt's shape colour, "
                     + ", ".join(f"{100 * a.other_prompts_shapes:.0f} %" for a in arms) + " in another prompt's "
                     f"(the prompts' real clips: {100 * real_shapes[0]:.0f} % and {100 * real_shapes[1]:.0f} %); "
                     "samples that draw their prompts' shapes lie well above the second figure.")
    if evaluator is None:
        notes.append("FVD was switched off (ablation.fvd.enabled=false).")
    else:
        shape = plan.shape
        real_change = real_frame_difference(evaluator.windows, shape.num_frames, shape.height, shape.width)
        notes.append(sample_check_note([a.sample_frame_difference for a in arms], real_change, seed))
        rank_note = evaluator.covariance_note(len(plan.prompts) * int(cfg.ablation.sampling.samples_per_prompt))
        if rank_note:
            notes.append(rank_note)
    return notes


def run_ablation(cfg, ctx) -> AblationResult:
    section = cfg.ablation
    seeds = [int(s) for s in section.seeds]
    plan = plan_arms(cfg, ctx, seeds)
    shape = plan.shape
    judge = build_judge(section.judge, plan.split, shape.num_frames, shape.height, shape.width, str(cfg.cache_dir),
                        ctx.log) if section.judge.enabled else None
    if judge is not None:
        ctx.log.info(judge.describe())
    evaluator = build_evaluator(cfg, plan.split, judge, shape)
    if evaluator is not None:
        rank_note = evaluator.covariance_note(len(plan.prompts) * int(section.sampling.samples_per_prompt))
        if rank_note:
            ctx.log.warning(rank_note)
    train_arms(cfg, ctx, plan, seeds)
    records = {a.name: [evaluate_job(ctx, a.name, seed, evaluator, judge) for seed in seeds] for a in plan.arms}
    samples = {a.name: [np.load(job_dir(ctx, a.name, seed) / SAMPLES) for seed in seeds] for a in plan.arms}
    prompt_clips = prompt_real_clips(plan.prompts, plan.split.real, shape.num_frames, shape.height, shape.width)
    pack = write_study_pack(Path(ctx.run_dir), samples, plan.prompts, seeds, int(section.sampling.fps)) \
        if section.study.enabled else None
    panel, gains = rate_samples(section, pack, samples, plan.prompts, seeds, judge, prompt_clips)
    elo = elo_from_votes(pack) if pack is not None else {}
    arms = [arm_result(a, records[a.name], gains.get(a.name), samples[a.name], prompt_clips, elo.get(a.name),
                       plan.truth) for a in plan.arms]
    result = AblationResult(
        experiment=cfg.experiment, criterion=str(section.criterion), profile=cfg.profile, arms=tuple(arms),
        feature_extractor=evaluator.metric.labels().get("feature_extractor") if evaluator is not None else None,
        notes=tuple(ablation_notes(cfg, plan, arms, evaluator, judge, panel, seeds[0],
                                   shape_check(prompt_clips, prompt_clips))), seeds=tuple(seeds),
        subset_size=plan.subset_size, num_real_clips=plan.split.real.num_rows,
        num_real_videos=None if evaluator is None else len(evaluator.windows),
        real_clips_clean_only=bool(section.heldout.clean_only), heldout_videos=tuple(plan.split.heldout_videos),
        prompts=tuple(plan.prompts), samples_per_prompt=int(section.sampling.samples_per_prompt),
        study_pack=None if pack is None else str(pack), judge=None if judge is None else asdict(judge.report),
        simulated_raters=panel, clip_table=str(plan.clip_table), image_model=plan.image_model, plot=PLOT,
        sample_grid=SAMPLE_GRID, proxy=shape)
    grid = [("real: the prompts' clips", prompt_clips)]
    grid += [(f"{name} (seed {seeds[0]})", videos[0][:len(plan.prompts)]) for name, videos in samples.items()]
    write_outputs(ctx, result, grid, samples)
    return result


def write_outputs(ctx, result: AblationResult, grid: list[tuple[str, np.ndarray]],
                  samples: dict[str, list[np.ndarray]]) -> None:
    """results.json and results.md, the plot, the sample grid, TensorBoard's HParams and images; where to look."""
    run_dir = Path(ctx.run_dir)
    write_plot(list(result.arms), run_dir / result.plot)
    write_sample_grid(grid, run_dir / result.sample_grid)
    writer = ctx.tensorboard()
    write_hparams(writer, result)
    write_sample_images(writer, grid, samples, len(result.prompts))
    markdown = render_markdown(result)
    ctx.write_results(result.to_dict(), markdown)
    print(markdown)
    print(f"TensorBoard (each arm's samples under IMAGES, the arms side by side under HPARAMS): "
          f"tensorboard --logdir {ctx.run_dir}")
    if result.study_pack is not None:
        print(f"Study pack: {result.study_pack}  (rate it: python run.py experiment=preference_study "
              f"study.pack={result.study_pack})")
