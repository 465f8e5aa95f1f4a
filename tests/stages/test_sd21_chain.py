"""From SD 2.1 to an ablation arm's proxy: SD 2.1 weights -> pretrain_image_edm -> ablation.image_init.checkpoint ->
the arm's proxy, on tiny files written here in the released layouts (nothing is downloaded).

"SD 2.1" is the sd21 preset scaled down (two levels, attention on all but the deepest, 64 channels per head as in
SD 2.1, so the files load without a head count), the tiny KL autoencoder and the tiny text tower. It is written as an
ldm checkpoint (a `state_dict` of model.diffusion_model.*, first_stage_model.*, cond_stage_model.model.* and the
schedule's buffers), as the same tensors in .safetensors, and as a diffusers pipeline folder written by diffusers.
"""

import json
import logging

import pyarrow.parquet as pq
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf

from lightning_svd import training
from lightning_svd.ablation.data import write_arm_table
from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.models import build_autoencoder, build_unet
from lightning_svd.models.conditioners import OpenCLIPTextEncoder
from lightning_svd.models.state_dict_io import write_state_dict
from lightning_svd.run_context import RunContext
from lightning_svd.stages import STAGES, load_init_weights, load_stage
from lightning_svd.stages.checkpoints import averaged_state_dict, read_checkpoint
from lightning_svd.stages.components import TINY_OPEN_CLIP
from lightning_svd.tasks import ablation

from .tiny import FAST, tiny_run

SCALED_SD21 = {"model_channels": 64, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_levels": [0]}
CONTEXT = TINY_OPEN_CLIP["text_cfg"]["width"]
# The stage overrides that build this architecture (profile=paper needs none: preset sd21 is SD 2.1 itself).
IMAGE_STAGE = [
    "train.unet.preset=sd21",
    f"train.unet.options={json.dumps({**SCALED_SD21, 'temporal': False})}",
    "train.autoencoder.kind=kl",
    "train.autoencoder.preset=tiny",
]
# A spatial-transformer tensor (random at init) in released names, its diffusers name, and an autoencoder tensor.
UNET_KEY = "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
DIFFUSERS_UNET_KEY = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
VAE_KEY = "encoder.down.0.block.0.conv1.weight"
DIFFUSERS_VAE_KEY = "encoder.down_blocks.0.resnets.0.conv1.weight"


class StartingWeights(Callback):
    """The stage's weights as training starts, after init_from (the steps then move them)."""

    def on_train_start(self, trainer, pl_module):
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


@pytest.fixture(scope="module")
def sd21(tmp_path_factory):
    """Paths of the ldm .ckpt, its .safetensors twin and the diffusers folder, and their reference tensors."""
    root = tmp_path_factory.mktemp("sd21")
    torch.manual_seed(1)  # not the stages' seed, so a tensor that matches came from the file
    unet = build_unet("sd21", **SCALED_SD21, context_dim=CONTEXT)
    autoencoder = build_autoencoder("tiny")
    text = OpenCLIPTextEncoder(TINY_OPEN_CLIP)
    tensors = {
        **{f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()},
        **{f"first_stage_model.{k}": v for k, v in autoencoder.state_dict().items()},
        **{f"cond_stage_model.model.{k}": v for k, v in text.state_dict().items()},
        "cond_stage_model.model.text_projection": torch.randn(CONTEXT, TINY_OPEN_CLIP["embed_dim"]),
        "betas": torch.linspace(0.00085, 0.012, 1000),
        "alphas_cumprod": torch.linspace(0.999, 0.005, 1000),
    }
    torch.save({"state_dict": tensors, "global_step": 110000}, root / "v2-1.ckpt")
    write_state_dict(tensors, root / "v2-1.safetensors")

    pipeline = root / "stable-diffusion-2-1"
    diffusers_unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(64, 128),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CONTEXT,
        attention_head_dim=(1, 2),
        use_linear_projection=True,
        upcast_attention=True,
    )
    diffusers_vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        sample_size=16,
    )
    diffusers_unet.save_pretrained(pipeline / "unet")
    diffusers_vae.save_pretrained(pipeline / "vae")
    (pipeline / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    expected = {
        "ldm": {"unet": unet.state_dict()[UNET_KEY], "vae": autoencoder.state_dict()[VAE_KEY]},
        "diffusers": {
            "unet": diffusers_unet.state_dict()[DIFFUSERS_UNET_KEY],
            "vae": diffusers_vae.state_dict()[DIFFUSERS_VAE_KEY],
        },
    }
    paths = {"ckpt": root / "v2-1.ckpt", "safetensors": root / "v2-1.safetensors", "diffusers": pipeline}
    return paths, expected, text.state_dict()


def layout(source: str) -> str:
    return "diffusers" if source == "diffusers" else "ldm"


@pytest.fixture(scope="module")
def image_runs(sd21, tmp_path_factory, clip_table):
    """pretrain_image_edm, one step from each SD 2.1 layout given as init_from, with its starting weights."""
    paths, _, _ = sd21
    root = tmp_path_factory.mktemp("image_runs")
    runs = {}
    for source in ("ckpt", "diffusers"):
        start = StartingWeights()
        result = tiny_run(
            "pretrain_image_edm",
            root / source,
            clip_table,
            *IMAGE_STAGE,
            "trainer.max_steps=1",
            f"init_from={paths[source]}",
            callbacks=[start],
        )
        runs[source] = (root / source, result, start.state)
    return runs


@pytest.mark.parametrize("source", ["ckpt", "diffusers"])
def test_init_from_sd21_seeds_the_image_stage(sd21, image_runs, source):
    """The UNet (under both its names) and the autoencoder arrive; the text tower is train.open_clip.weights' job."""
    _, expected, _ = sd21
    _, result, start = image_runs[source]
    counts = result["init_weights"]
    unet_tensors = sum(k.startswith("unet.") for k in start)
    vae_tensors = sum(k.startswith("autoencoder.") for k in start)
    assert result["steps"] == 1 and result["motion_buckets"]  # calibrated on the table: SD 2.1 has none
    assert counts["copied"] == 2 * unet_tensors + vae_tensors and counts["grown"] == 0 and counts["dropped"] == 0
    wanted = expected[layout(source)]
    assert torch.equal(start[f"unet.{UNET_KEY}"], wanted["unet"])
    assert torch.equal(start[f"denoiser.network.{UNET_KEY}"], wanted["unet"])
    assert torch.equal(start[f"autoencoder.{VAE_KEY}"], wanted["vae"])


def test_a_safetensors_copy_of_the_ldm_checkpoint_seeds_the_same_weights(sd21, image_runs):
    paths, _, _ = sd21
    _, _, from_ckpt = image_runs["ckpt"]
    cfg = load_config("pretrain_image_edm", "tiny", [*FAST, *IMAGE_STAGE])
    stage = STAGES["image"](stage=OmegaConf.to_container(cfg.train, resolve=True))
    counts = load_init_weights(stage, paths["safetensors"])
    assert counts["dropped"] == 0
    state = stage.state_dict()
    assert all(torch.equal(state[k], from_ckpt[k]) for k in state if k.startswith(("unet.", "autoencoder.")))


@pytest.mark.parametrize("source", ["ckpt", "diffusers"])
def test_sd21_as_the_image_stages_weight_files(sd21, source):
    """The paper profile's way: train.unet.weights and train.autoencoder.weights (and, from an ldm checkpoint,
    train.open_clip.weights) name SD 2.1 itself; the UNet's architecture comes from the file."""
    paths, expected, text = sd21
    path = paths[source]
    given = [f"train.unet.weights={path}", "train.autoencoder.kind=kl", f"train.autoencoder.weights={path}"]
    if source == "ckpt":
        given.append(f"train.open_clip.weights={path}")
    cfg = load_config("pretrain_image_edm", "tiny", [*FAST, *given])
    stage = STAGES["image"](stage=OmegaConf.to_container(cfg.train, resolve=True))
    assert stage.unet.config.model_channels == 64 and not stage.unet.config.temporal
    wanted = expected[layout(source)]
    assert torch.equal(stage.unet.state_dict()[UNET_KEY], wanted["unet"])
    assert torch.equal(stage.autoencoder.state_dict()[VAE_KEY], wanted["vae"])
    if source == "ckpt":
        tower = stage.conditioner.inputs[0].embedder.state_dict()
        assert all(torch.equal(tower[k], v) for k, v in text.items())


def first_arm_proxy(checkpoint, clip_table, tmp_path):
    """The proxy config of an ablation's first arm with `checkpoint` as ablation.image_init.checkpoint, built by the
    ablation's own code at this test's sizes, with the arm's clips written as the ablation writes them."""
    cfg = load_config("ablation_flow", "tiny", [f"ablation.image_init.checkpoint={checkpoint}"])
    cfg.ablation.extra_proxy_overrides = [
        *IMAGE_STAGE[:1],
        f"train.unet.options={json.dumps({**SCALED_SD21, 'temporal': True})}",
        *IMAGE_STAGE[2:],
        "train.height=16",
        "train.width=16",
        "train.num_frames=2",
        "train.data.batch_size=1",
        "trainer.max_steps=1",
    ]
    arms, used = ablation.build_arms(cfg, None, pq.read_table(clip_table))
    assert used == str(checkpoint) and arms[0].proxy_overrides[0] == f"init_from={checkpoint}"
    table = write_arm_table(arms[0].table, tmp_path / "arm.parquet")
    return ablation.proxy_config(cfg, table, 0, tmp_path / "arm", arms[0].proxy_overrides)


def test_an_arms_proxy_trains_from_a_pretrain_image_edm_run(image_runs, clip_table, tmp_path):
    """ablation.image_init.checkpoint = the image stage's run dir: the arm's proxy starts from its (EMA) spatial
    weights and autoencoder, grows temporal layers and trains."""
    image_run = image_runs["ckpt"][0]
    proxy = first_arm_proxy(image_run, clip_table, tmp_path)
    (tmp_path / "arm").mkdir()
    start = StartingWeights()
    result = training.train(proxy, RunContext(tmp_path / "arm", logging.getLogger(__name__)), callbacks=[start])
    assert result["steps"] == 1 and result["stage"] == "text_to_video" and result["init_from"] == str(image_run)
    assert result["init_weights"]["copied"] > 0 and result["init_weights"]["new"] > 0  # the temporal layers
    reference = averaged_state_dict(read_checkpoint(image_run))
    for key in (f"unet.{UNET_KEY}", f"autoencoder.{VAE_KEY}"):
        assert torch.equal(start.state[key], reference[key])
    assert "unet.input_blocks.1.0.time_stack.in_layers.2.weight" in start.state
    assert "unet.input_blocks.1.0.time_stack.in_layers.2.weight" not in reference


def test_an_arms_proxy_starts_from_sd21_itself(sd21, clip_table, tmp_path):
    """ablation.image_init.checkpoint = the SD 2.1 file, as the paper's proxies start (its discrete v-schedule is
    theirs): the arm's init_from seeds the proxy's spatial layers and autoencoder from it."""
    paths, expected, _ = sd21
    proxy = first_arm_proxy(paths["ckpt"], clip_table, tmp_path)
    stage = STAGES[proxy.train.name](stage=OmegaConf.to_container(proxy.train, resolve=True))
    counts = load_init_weights(stage, proxy.init_from)
    assert counts["dropped"] == 0 and counts["new"] > 0
    state = stage.state_dict()
    assert torch.equal(state[f"unet.{UNET_KEY}"], expected["ldm"]["unet"])
    assert torch.equal(state[f"autoencoder.{VAE_KEY}"], expected["ldm"]["vae"])


def test_what_is_not_a_stage_or_released_weights_fails_in_one_line(tmp_path):
    text_only = tmp_path / "text_encoder.ckpt"
    torch.save({"state_dict": {"cond_stage_model.model.ln_final.weight": torch.ones(4)}}, text_only)
    not_torch = tmp_path / "notes.ckpt"
    not_torch.write_text("not a checkpoint")
    (tmp_path / "empty").mkdir()
    cases = {
        text_only: "neither 'model.diffusion_model.*' nor 'first_stage_model.*'",
        not_torch: "cannot read",
        tmp_path / "empty": "neither a run dir",
    }
    for path, message in cases.items():
        with pytest.raises(UserError, match=message) as error:
            load_init_weights(torch.nn.Identity(), path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(UserError, match="is not a stage checkpoint"):
        load_stage(text_only)
