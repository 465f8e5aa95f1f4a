"""Training one stage from a config: clip table, motion buckets, DataModule, stage, Trainer, fit, results.

Below the tasks and the ablation library, which both train: the `train` task runs it as it is, the ablation's
proxies and its image model run it per arm-seed. The DataModule shards by rank itself, so Lightning's sampler
replacement is off.
"""

import time
from pathlib import Path

import lightning as L
import pyarrow as pa
import pyarrow.compute as pc
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import OmegaConf

from callbacks import build_callbacks
from data_modules.clips import ClipDataModule, ImageDataModule, read_clips
from data_modules.corpus_table import write_corpus_clip_table
from data_modules.motion_buckets import MotionBuckets
from data_modules.multiview import multiview_datamodule
from data_modules.shards import ShardDataModule, read_manifest
from lightning_svd.clip_table import config_column, model_column
from lightning_svd.errors import UserError
from lightning_svd.models.state_dict_io import weights_digest
from lightning_svd.stages import STAGES, load_init_weights
from lightning_svd.stages.checkpoints import check_resumable, stored_motion_buckets
from lightning_svd.synthetic import CorpusSpec, ensure_corpus


class Throughput(Callback):
    """Clips per second over the run's steps after the first (which pays for start-up)."""

    def __init__(self):
        self.started = None
        self.clips = 0
        self.seconds = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.started is not None and (self.clips or self.seconds):
            self.seconds += time.perf_counter() - self.started
            self.clips += len(batch["clip_id"]) * trainer.world_size
        elif self.started is not None:
            self.seconds = 1e-12
        self.started = None

    @property
    def clips_per_second(self) -> float | None:
        return round(self.clips / self.seconds, 3) if self.clips else None


def last_checkpoint(run_dir: str | Path) -> Path:
    """Where a training keeps its latest state and, once finished, its final weights."""
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def clip_table(cfg, ctx) -> Path:
    """The configured clip table, or the synthetic corpus' ground-truth table written into the run dir."""
    if cfg.train.data.table:
        return Path(cfg.train.data.table)
    if cfg.train.data.shards:  # the table they were made from: motion buckets and callbacks' reference clips
        return Path(read_manifest(cfg.train.data.shards)["clip_table"])
    root = ensure_corpus(CorpusSpec.from_config(cfg.corpus), cfg.cache_dir, progress=False)
    return write_corpus_clip_table(root, Path(ctx.run_dir) / "clip_table.parquet")


def table_flow_source(scored: pa.Table) -> tuple[str | None, str | None]:
    """What produced the flow_score of `scored` (clips that have one): its distinct `flow_score_model` and
    `flow_score_config` values."""

    def distinct(column: str) -> str | None:
        if column not in scored.column_names:
            return None
        return " | ".join(sorted(str(v) for v in pc.unique(scored[column].drop_null()).to_pylist() if v)) or None

    return distinct(model_column("flow_score")), distinct(config_column("flow_score"))


def motion_buckets(cfg, table: Path, log) -> MotionBuckets:
    """Keep the buckets of the stage we start from (their meaning is part of that model), else calibrate. A kept map
    calibrated on another flow method than this table's maps other units: say so, once, where the stage is
    conditioned on motion_bucket_id (the ablations' proxies are not)."""
    clips = read_clips(table)
    if "flow_score" not in clips.column_names:
        clips = clips.append_column("flow_score", pa.nulls(clips.num_rows, pa.float64()))
    scored = clips.filter(pc.is_valid(clips["flow_score"]))
    method, config = table_flow_source(scored)
    if cfg.init_from:
        stored = stored_motion_buckets(cfg.init_from)
        if stored:
            buckets = MotionBuckets.from_dict(stored)
            conditioned = "motion_bucket_id" in list(cfg.train.micro_conditioning["keys"])
            if conditioned and buckets.flow_method != method:
                log.warning(f"the motion_bucket_id map of init_from was calibrated on flow_score from "
                            f"{buckets.flow_method or 'an unrecorded method'}, this table's comes from "
                            f"{method or 'an unrecorded method'}: its bucket ids do not mean the same motion here")
            return buckets
    return MotionBuckets.calibrate(scored["flow_score"].to_numpy(), flow_method=method, flow_config=config)


def build_datamodule(cfg, table: Path, buckets: MotionBuckets):
    """The clip DataModule (videos), its image variant (the image stage) or the orbit DataModule (multiview); with
    `train.data.shards`, the shard DataModule (the clip DataModule serves the callbacks' reference clips)."""
    if cfg.train.name == "multiview":
        return multiview_datamodule(cfg)
    data = cfg.train.data
    common = {"height": int(cfg.train.height), "width": int(cfg.train.width), "motion_buckets": buckets,
              "batch_size": int(data.batch_size), "num_workers": int(data.num_workers),
              "caption_probabilities": OmegaConf.to_container(data.caption_probabilities),
              "camera_motion": data.camera_motion, "camera_directions": data.camera_directions,
              "seed": int(cfg.seed),
              "cache_clips": bool(data.cache_clips)}
    if cfg.train.name == "image":
        online = ImageDataModule(table, **common)
    else:
        online = ClipDataModule(table, int(cfg.train.num_frames), strides=list(data.strides), **common)
    if not data.shards:
        return online
    return ShardDataModule(data.shards, buckets, int(data.batch_size), int(data.num_workers),
                           common["caption_probabilities"], int(cfg.seed), references=online)


def encoder_digests(stage) -> dict[str, str]:
    """Weight digests of the frozen encoders whose outputs a precomputed batch carries, by batch key."""
    return {key: weights_digest(module) for key, module in stage.precomputable().items()}


def check_shards(cfg, stage, manifest: dict) -> None:
    """Shards train a stage only where they hold what its own frozen encoders give (compared by weight digest)."""
    where = f"train.data.shards={cfg.train.data.shards}"
    if not stage.trains_from_precomputed:
        raise UserError(f"the {cfg.train.name} stage does not train from shards; unset {where}")
    differ = sorted(k for k, v in encoder_digests(stage).items() if manifest["encoders"].get(k) != v)
    if differ:
        raise UserError(f"{where} holds {', '.join(differ)} from other encoder weights than this stage's (made for "
                        f"experiment={manifest['experiment']} seed={manifest['seed']}); precompute with this run's "
                        "experiment, seed, init_from and train.autoencoder / train.open_clip settings")
    for key in ("camera_motion", "camera_directions"):
        asked = OmegaConf.to_container(cfg.train.data)[key]
        if manifest.get(key) != asked:
            raise UserError(f"{where} holds clips of {key}={manifest.get(key)}, this run asks train.data.{key}={asked}")


def build_stage(cfg, buckets: MotionBuckets):
    name = cfg.train.name
    if name not in STAGES:
        raise UserError(f"unknown train.name '{name}'; valid stages: {', '.join(STAGES)}")
    stage_cfg = OmegaConf.to_container(cfg.train, resolve=True)
    try:
        return STAGES[name](stage=stage_cfg, motion_buckets=buckets.to_dict(), seed=int(cfg.seed))
    except ValueError as error:  # bad train.* values, and weight files that do not fit (CheckpointError)
        raise UserError(f"cannot build the {name} stage from train.*: {' '.join(str(error).split())}") from None


def cpu_has_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX); elsewhere it emulates it."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def emulated_bfloat16(cfg) -> bool:
    """bfloat16 mixed precision asked of a CPU that would emulate it, more slowly than float32."""
    on_cpu = str(cfg.trainer.get("accelerator", "auto")) == "cpu" or not torch.cuda.is_available()
    bfloat16 = str(cfg.trainer.get("precision", "32-true")).startswith("bf16")
    return on_cpu and bfloat16 and not cpu_has_bfloat16()


def build_trainer(cfg, ctx, callbacks=()) -> tuple[L.Trainer, Throughput]:
    if emulated_bfloat16(cfg):
        ctx.log.warning(f"trainer.precision={cfg.trainer.precision}: this CPU has no bfloat16 instructions, so it "
                        "trains slower than in float32; set trainer.precision=32-true (for the ablation's proxies: "
                        "ablation.proxy.trainer.precision=32-true)")
    throughput = Throughput()
    checkpoints = ModelCheckpoint(
        dirpath=Path(ctx.run_dir) / "checkpoints", save_last=True, save_top_k=0,
        every_n_train_steps=int(cfg.train.checkpoint_every_n_steps),
    )
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs.setdefault("use_distributed_sampler", False)
    # No hyperparameter summary without metrics: the hparams callback writes one with the final metrics.
    logger = TensorBoardLogger(save_dir=str(ctx.run_dir), name="tensorboard", version="", default_hp_metric=False)
    try:
        trainer = L.Trainer(**kwargs, logger=logger, callbacks=[checkpoints, throughput, *callbacks],
                            default_root_dir=str(ctx.run_dir))
    except (ValueError, TypeError, MisconfigurationException) as error:
        raise UserError(f"Lightning rejects the trainer.* settings: {' '.join(str(error).split())}") from None
    return trainer, throughput


def gradient_accumulation(global_batch: int | None, per_device: int, world_size: int, configured: int) -> int:
    """How many batches each optimizer step accumulates so that it sees `global_batch` clips (the paper's batch):
    global = per-device batch x processes x accumulation. Without a global batch, `trainer.accumulate_grad_batches`
    as configured."""
    if global_batch is None:
        return configured
    per_step = per_device * world_size
    if global_batch % per_step:
        raise UserError(
            f"train.global_batch_size={global_batch} is not a multiple of train.data.batch_size={per_device} x "
            f"{world_size} process(es) = {per_step}; change one of them (or trainer.devices / trainer.num_nodes)")
    needed = global_batch // per_step
    if configured not in (1, needed):
        raise UserError(
            f"trainer.accumulate_grad_batches={configured} contradicts train.global_batch_size={global_batch}, which "
            f"needs {needed} with batch {per_device} on {world_size} process(es); leave it at 1")
    return needed


def apply_global_batch(cfg, trainer: L.Trainer, log) -> None:
    """Make the trainer accumulate what `train.global_batch_size` asks (or refuse, before any step), and say so."""
    global_batch = cfg.train.global_batch_size
    per_device = int(cfg.train.data.batch_size)
    trainer.accumulate_grad_batches = gradient_accumulation(
        None if global_batch is None else int(global_batch), per_device, trainer.world_size,
        int(cfg.trainer.accumulate_grad_batches))
    if global_batch is not None and trainer.is_global_zero:
        log.info(f"global batch {global_batch} = {per_device} per process x {trainer.world_size} process(es) x "
                 f"{trainer.accumulate_grad_batches} accumulated batches")


def check_strategy(cfg) -> None:
    """FSDP shards the weights that EMA and in-training sampling read whole: refuse those combinations up front."""
    strategy = str(cfg.trainer.strategy)
    if not strategy.startswith("fsdp"):
        return
    conflicts = ["train.ema.enabled=true"] if cfg.train.ema.enabled else []
    conflicts += [f"callbacks.{name}.enabled=true" for name in ("samples", "fvd", "preference")
                  if cfg.callbacks[name].enabled]
    if conflicts:
        raise UserError(f"trainer.strategy={strategy} shards the weights that {', '.join(conflicts)} read whole; "
                        "set them to false or use trainer.strategy=ddp")


def train(cfg, ctx, callbacks=()) -> dict:
    """Fit the stage (resuming from `<run_dir>/checkpoints/last.ckpt` when `resume`), save `last.ckpt`, write and
    return the run's results."""
    check_strategy(cfg)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    table = clip_table(cfg, ctx)
    buckets = motion_buckets(cfg, table, ctx.log)
    stage = build_stage(cfg, buckets)
    last = last_checkpoint(ctx.run_dir)
    resume_from = str(check_resumable(last)) if cfg.resume and last.is_file() else None
    init_counts = None
    if cfg.init_from and resume_from is None:
        init_counts = load_init_weights(stage, cfg.init_from)
        ctx.log.info(f"init_from {cfg.init_from}: {init_counts}")
    datamodule = build_datamodule(cfg, table, buckets)
    if cfg.train.data.shards and resume_from is None:  # a resumed run's encoders are its checkpoint's, checked before
        check_shards(cfg, stage, read_manifest(cfg.train.data.shards))
    configured = build_callbacks(cfg, ctx.run_dir)
    trainer, throughput = build_trainer(cfg, ctx, [*callbacks, *configured])
    apply_global_batch(cfg, trainer, ctx.log)
    if resume_from:
        ctx.log.info(f"resuming from {resume_from}")
    trainer.fit(stage, datamodule=datamodule, ckpt_path=resume_from)
    trainer.save_checkpoint(last)
    loss = trainer.callback_metrics.get("train/loss")
    results = {
        "experiment": cfg.experiment, "profile": cfg.profile, "stage": cfg.train.name,
        "steps": int(trainer.global_step), "final_loss": None if loss is None else round(float(loss), 6),
        "clips_per_second": throughput.clips_per_second, "world_size": trainer.world_size,
        "checkpoint": str(last), "resumed_from": resume_from, "init_from": cfg.init_from,
        "init_weights": init_counts, "global_batch_size": cfg.train.global_batch_size,
        "effective_batch_size": int(cfg.train.data.batch_size) * trainer.world_size
        * trainer.accumulate_grad_batches,
        "clip_table": str(table), "shards": cfg.train.data.shards, "motion_buckets": buckets.to_dict(),
    }
    for callback in configured:
        if hasattr(callback, "results"):
            results.update(callback.results())
    if hasattr(stage, "export") and trainer.is_global_zero:
        results.update(stage.export(Path(ctx.run_dir)))
    if trainer.is_global_zero:
        rows = "\n".join(f"| {k} | {v} |" for k, v in results.items() if k != "motion_buckets")
        rows += f"\n| motion_buckets calibrated on | {buckets.flow_method or 'unrecorded flow_score'} |"
        ctx.write_results(results, f"# Training: {cfg.experiment} ({cfg.train.name})\n\n| key | value |\n"
                                   f"|---|---|\n{rows}\n")
        ctx.log.info(f"{results['steps']} steps, final loss {results['final_loss']}, "
                     f"{results['clips_per_second']} clips/s -> {last}")
    return results
