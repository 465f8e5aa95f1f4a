"""Arms that keep the clips and change the training: the caption ablation and the image-pretraining ablation.

- Captions (paper E.2.2, CoCa vs VideoBLIP vs LLM): every arm trains on the whole subset, each with captions from
  one source only. A source no clip has is an error, not an arm that silently trains unconditionally.
- Image init (paper Fig. 3a): the same proxy with spatial layers from an image-pretrained model against random
  spatial layers. The image model is an image-only run of the proxy recipe (SD 2.1's discrete v-prediction) on the
  subset's frames, or given weights (the paper profile: SD 2.1 itself, as its ldm checkpoint or diffusers folder, or
  an image stage trained from it).
"""

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
from omegaconf import DictConfig, OmegaConf

from data_modules.arms import Arm
from lightning_svd import training
from lightning_svd.ablation.data import write_arm_table
from lightning_svd.ablation.recipe import proxy_recipe
from lightning_svd.cache import build_once_resuming
from lightning_svd.clip_table import CAPTION_SOURCES
from lightning_svd.errors import UserError
from lightning_svd.run_context import RunContext
from lightning_svd.synthetic import CorpusSpec

NO_CAPTION = "none"  # the control arm: empty captions, so the proxy trains unconditionally
IMAGE_MODELS = "image_models"  # under cache_dir: one folder per image model, named by its key
# Image models trained once and shipped with the code, in SD's released layout (`model.diffusion_model.*`), named by
# the same key: the tiny recipe's takes 15 minutes on 2 cores, more than the demo's budget (scripts/ship_image_model.py)
SHIPPED_IMAGE_MODELS = Path(__file__).parent / "weights"
IMAGE_DATA = ("corpus", "subset")


def check_caption_sources(sources: list[str]) -> None:
    valid = [*CAPTION_SOURCES, NO_CAPTION]
    if not sources:
        raise UserError(f"ablation.captions.sources is empty; list caption sources from {valid}")
    for source in sources:
        if source not in valid:
            raise UserError(f"unknown caption source {source!r} in ablation.captions.sources; valid: {valid}")


def caption_arms(table: pa.Table, sources: list[str]) -> list[Arm]:
    """One arm per caption source, each sampling captions from that source alone."""
    check_caption_sources(sources)
    arms = []
    for source in sources:
        if source != NO_CAPTION:
            column = CAPTION_SOURCES[source]
            if column not in table.column_names or table[column].null_count == table.num_rows:
                raise UserError(f"no clip has a {source} caption (column {column}): curate with that captioner "
                                "configured (see curation.captions), or drop it from ablation.captions.sources")
        chosen = tuple(f"train.data.caption_probabilities.{name}={1.0 if name == source else 0.0}"
                       for name in CAPTION_SOURCES)
        arms.append(Arm(f"captions_{source}", "captions", 0.0, None, table, chosen))
    return arms


def image_init_arms(table: pa.Table, image_checkpoint: str) -> list[Arm]:
    """Random spatial layers first, then the image-pretrained ones, on the same clips."""
    return [Arm("image_init_off", "image_init", 0.0, None, table, ("init_from=null",)),
            Arm("image_init_on", "image_init", 0.0, None, table, (f"init_from={image_checkpoint}",))]


class ImageModel(NamedTuple):
    """The image-only proxy to train: its config, its cache key and its data in words."""

    config: DictConfig
    key: str
    described: str


def image_model_config(cfg, subset: pa.Table | None, seed: int) -> ImageModel:
    """The image-only proxy's training config, keyed by the data it sees, its seed and its recipe."""
    section = cfg.ablation.image_init
    image = proxy_recipe(cfg, image=True)
    image.seed, image.cache_dir, image.resume = seed, cfg.cache_dir, True
    if section.data == "corpus":
        image.corpus = OmegaConf.merge(cfg.corpus, section.corpus)
        image.train.data.table = None
        data_key = f"corpus:{CorpusSpec.from_config(image.corpus).key()}"
        described = f"a clean synthetic corpus of its own ({image.corpus.num_videos} videos, seed {image.corpus.seed})"
    else:
        image.train.data.batch_size = min(int(image.train.data.batch_size), subset.num_rows)
        data_key = "|".join(str(c) for c in subset.column("clip_id").to_pylist())
        described = "the subset's frames"
    return ImageModel(image, image_model_key(image, data_key, seed), described)


def image_model_key(image, data_key: str, seed: int) -> str:
    """What decides the image model: its data, its seed and its training recipe (not where it runs, nor how it would
    sample: the arms' guidance or sampler settings must not retrain, or miss the shipped model; nor the share of
    noise a clip's frames have in common, which leaves a one-frame model's noise N(0, 1) all the same)."""
    recipe = OmegaConf.to_container(OmegaConf.masked_copy(image, ["train", "trainer", "init_from"]), resolve=True)
    recipe["train"]["diffusion"].pop("sampling", None)
    if recipe["train"]["num_frames"] == 1:
        recipe["train"]["diffusion"].pop("shared_frame_noise", None)
    return hashlib.sha256(json.dumps([data_key, seed, recipe], sort_keys=True, default=str).encode()).hexdigest()[:16]


def shipped_image_model(key: str) -> Path | None:
    """The image model of this key that ships with the code, if one does."""
    path = SHIPPED_IMAGE_MODELS / f"{key}.safetensors"
    return path if path.is_file() else None


def pretrained_image_model(cfg, ctx, subset: pa.Table, seed: int) -> str:
    """`ablation.image_init.checkpoint`, or the image-only proxy trained here (cached).

    The paper's proxies start from SD 2.1, which never saw the video subset. The tiny stand-in therefore trains on
    data of its own (`image_init.data=corpus`: a synthetic corpus with `image_init.corpus` over `corpus.*`, by
    default another seed without planted degradations), so no arm starts from a model that already draws them;
    `image_init.data=subset` trains on the subset's frames instead. The model is cached under `cache_dir`, keyed by
    its data, the image recipe and the seed, so every later ablation reuses it (as every paper arm reuses SD 2.1);
    an interrupted pretraining resumes from its last checkpoint. A model of the same key shipped with the code
    (`SHIPPED_IMAGE_MODELS`: the tiny recipe's, `ablation.image_init.seed` 0) is used instead of training one.
    """
    section = cfg.ablation.image_init
    if section.checkpoint:
        path = Path(str(section.checkpoint)).expanduser()
        if not path.exists():
            raise UserError(f"ablation.image_init.checkpoint {path} not found; give SD 2.1 (ldm .ckpt/.safetensors or "
                            "diffusers folder), an image stage's .ckpt or run dir, or null to pretrain one")
        return str(path)
    if section.data not in IMAGE_DATA:
        raise UserError(f"ablation.image_init.data={section.data!r}; choose one of {', '.join(IMAGE_DATA)}")
    model = image_model_config(cfg, subset, seed)
    shipped = shipped_image_model(model.key)
    if shipped is not None:
        ctx.log.info(f"image model every arm starts from: {shipped} (trained once by this recipe on "
                     f"{model.described} and shipped with the code; a changed recipe, image corpus or "
                     "image_init.seed trains its own, cached)")
        return str(shipped)
    folder = cached_image_model(cfg, ctx, subset, model)
    ctx.log.info(f"image model every arm starts from: {folder}")
    return str(training.last_checkpoint(folder))


def cached_image_model(cfg, ctx, subset: pa.Table | None, model: ImageModel) -> Path:
    """The image-only proxy `model` (`image_model_config`), trained here once and cached under its key (`subset` is
    read only with `image_init.data=subset`)."""
    section = cfg.ablation.image_init
    image, described = model.config, model.described

    def pretrain(work: Path) -> None:
        if section.data == "subset":
            image.train.data.table = str(write_arm_table(subset, work / "clips.parquet"))
        image.run_dir = str(work)
        OmegaConf.save(image, work / "config.yaml", resolve=True)
        ctx.log.info(f"image pretraining: {image.trainer.max_steps} steps of the image-only proxy on {described}, "
                     f"cached for later ablations")
        training.train(image, RunContext(work, ctx.log))  # alone, on the ablation process' threads

    return build_once_resuming(Path(str(cfg.cache_dir)).expanduser() / IMAGE_MODELS, model.key, pretrain)
