"""Every stage experiment trains two steps in its tiny profile through the train task and seeds the next stage
(init_from); the sample task generates from the checkpoints."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from data_modules.motion_buckets import MotionBuckets
from lightning_svd.cli import main
from lightning_svd.config import load_config
from lightning_svd.errors import UserError
from lightning_svd.stages import STAGES, load_init_weights, load_stage

from .tiny import FAST, tiny_run

# (experiment, the earlier stage it starts from, overrides); sizes are each experiment's tiny profile.
CHAIN = [
    ("pretrain_image_edm", None, ["train.time_embedding_only_steps=1"]),
    ("pretrain_video", "pretrain_image_edm", []),
    ("finetune_t2v_hq", "pretrain_video", []),
    ("ablation_proxy", "pretrain_video", []),
    ("i2v", "finetune_t2v_hq", []),
    ("frame_interpolation", "finetune_t2v_hq", []),
    ("camera_lora", "i2v", ["train.data.camera_motion=pan"]),
]


@pytest.fixture(scope="module")
def chain(tmp_path_factory, clip_table):
    root = tmp_path_factory.mktemp("chain")
    results = {}
    for experiment, parent, overrides in CHAIN:
        init = [f"init_from={root / parent}"] if parent else []
        results[experiment] = tiny_run(experiment, root / experiment, clip_table, *overrides, *init, fast=False)
    return root, results


@pytest.mark.parametrize(("experiment", "parent"), [(e, p) for e, p, _ in CHAIN])
def test_stage_trains_two_steps_and_loads_its_parent(chain, experiment, parent):
    root, results = chain
    result = results[experiment]
    assert result["steps"] == 2 and result["final_loss"] is not None and result["final_loss"] > 0
    assert (root / experiment / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((root / experiment / "results.json").read_text())["steps"] == 2
    assert list((root / experiment / "tensorboard").glob("events.out.tfevents.*"))
    if parent:
        counts = result["init_weights"]
        assert counts["copied"] > 100, counts
    stage = load_stage(root / experiment)
    assert stage.hparams.stage["name"] == result["stage"]


def test_chained_weights_come_from_the_parents_ema(chain):
    """A weight the video stage takes from the image stage is the image stage's EMA value, under both its names."""
    root, _ = chain
    parent = torch.load(root / "pretrain_image_edm" / "checkpoints" / "last.ckpt", weights_only=False)
    key = "unet.out.2.weight"
    shadow = parent["ema"]["shadow"][key]
    assert not torch.equal(shadow, parent["state_dict"][key])
    cfg = load_config("pretrain_video", "tiny", [*FAST, "train.num_frames=2"])
    child = STAGES[cfg.train.name](stage=OmegaConf.to_container(cfg.train, resolve=True))
    counts = load_init_weights(child, root / "pretrain_image_edm")
    assert counts["new"] > 0  # the temporal layers the image stage never had
    state = child.state_dict()
    assert torch.equal(state[key], shadow) and torch.equal(state["denoiser.network.out.2.weight"], shadow)


def test_init_from_a_checkpoint_file_keeps_the_parents_motion_buckets(chain, clip_table, tmp_path):
    """The bucket map is part of the model: a stage seeded from another keeps it even on a table whose flow differs."""
    root, results = chain
    rows = pq.read_table(clip_table).to_pylist()
    for row in rows:
        row["flow_score"] = row["flow_score"] * 10.0 + 1.0
    faster = tmp_path / "faster.parquet"
    pq.write_table(pa.Table.from_pylist(rows), faster)
    parent_file = root / "finetune_t2v_hq" / "checkpoints" / "last.ckpt"
    result = tiny_run("i2v", tmp_path / "i2v", faster, "train.num_frames=2", f"init_from={parent_file}")
    assert result["init_weights"]["copied"] > 100
    assert result["motion_buckets"] == results["finetune_t2v_hq"]["motion_buckets"]
    assert result["motion_buckets"] != MotionBuckets.calibrate([r["flow_score"] for r in rows]).to_dict()
    saved = torch.load(tmp_path / "i2v" / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["hyper_parameters"]["motion_buckets"] == result["motion_buckets"]


def test_i2v_grew_the_input_conv_with_zeroed_new_channels(chain):
    root, results = chain
    assert results["i2v"]["init_weights"]["grown"] >= 1
    parent = load_stage(root / "finetune_t2v_hq")
    child = load_stage(root / "i2v")
    assert child.unet.input_blocks[0][0].weight.shape[1] == 2 * parent.unet.input_blocks[0][0].weight.shape[1]


def test_camera_lora_exports_its_adapters(chain):
    root, results = chain
    from safetensors.torch import load_file

    tensors = load_file(results["camera_lora"]["lora"])
    assert tensors and all(".lora_down." in k or ".lora_up." in k for k in tensors)


def test_sample_task_writes_mp4_and_gif(chain, tmp_path):
    root, _ = chain
    code = main(["experiment=sample", f"run_dir={tmp_path}", f"model.checkpoint={root / 'finetune_t2v_hq'}",
                 "prompt=a red square", "sampling.steps=2"])
    assert code == 0
    assert (tmp_path / "sample_00.mp4").stat().st_size > 0 and (tmp_path / "sample_00.gif").stat().st_size > 0


def write_image(path, colour) -> str:
    pixels = np.zeros((30, 40, 3), dtype=np.uint8)
    pixels[5:25, 10:30] = colour
    Image.fromarray(pixels).save(path)
    return str(path)


def gif_frames(path) -> int:
    with Image.open(path) as gif:
        return gif.n_frames


def test_sample_task_animates_an_image_with_an_image_to_video_checkpoint(chain, tmp_path):
    """The README's `experiment=sample model.checkpoint=runs/i2v/<run> image=frame.png`, two videos."""
    root, _ = chain
    image = write_image(tmp_path / "frame.png", (200, 30, 30))
    out = tmp_path / "samples"
    code = main(["experiment=sample", f"run_dir={out}", f"model.checkpoint={root / 'i2v'}", f"image={image}",
                 "sampling.steps=2", "sampling.count=2", "sampling.num_frames=3"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["stage"] == "image_to_video" and results["frames"] == 3 and results["size"] == [32, 32]
    assert [v["mp4"] for v in results["videos"]] == ["sample_00.mp4", "sample_01.mp4"]
    assert gif_frames(out / "sample_01.gif") == 3


def test_sample_task_interpolates_between_two_images(chain, tmp_path):
    root, _ = chain
    first = write_image(tmp_path / "first.png", (200, 30, 30))
    last = write_image(tmp_path / "last.png", (30, 30, 200))
    out = tmp_path / "samples"
    code = main(["experiment=sample", f"run_dir={out}", f"model.checkpoint={root / 'frame_interpolation'}",
                 f"image={first}", f"image_last={last}", "sampling.steps=2"])
    assert code == 0
    assert json.loads((out / "results.json").read_text())["image_last"] == last
    assert gif_frames(out / "sample_00.gif") == 5  # the tiny interpolation stage: 2 given + 3 predicted


@pytest.mark.parametrize(
    ("checkpoint", "given", "message"),
    [
        ("finetune_t2v_hq", ["image=x.png"], 'the text_to_video stage generates from text: give prompt="..."'),
        ("i2v", ["prompt=a red square"], "the image_to_video stage animates an image: give image=PATH"),
        ("frame_interpolation", ["image=x.png"], "give image=FIRST and image_last=LAST"),
        ("i2v", ["image=missing.png"], "image missing.png not found"),
    ],
)
def test_sample_task_names_the_input_a_checkpoint_needs(chain, tmp_path, capsys, checkpoint, given, message):
    root, _ = chain
    code = main(["experiment=sample", f"run_dir={tmp_path / 'out'}", f"model.checkpoint={root / checkpoint}", *given])
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and last_line.startswith("error: ") and message in last_line
    assert not list((tmp_path / "out").glob("*.mp4"))


def test_a_stage_starts_from_released_weights_in_an_official_single_file(chain, clip_table, tmp_path):
    """`init_from=svd.safetensors`: the UNet (under both its names) and the autoencoder come from the file."""
    from lightning_svd.models.state_dict_io import write_state_dict

    root, _ = chain
    released = load_stage(root / "i2v")
    with released.ema_weights():
        unet = {k: v.clone() for k, v in released.unet.state_dict().items()}
    tensors = {f"model.diffusion_model.{k}": v for k, v in unet.items()}
    tensors["first_stage_model.mix.weight"] = released.autoencoder.mix.weight * 2.0
    tensors["conditioner.embedders.0.open_clip.model.visual.proj"] = torch.zeros(2)
    official = write_state_dict(tensors, tmp_path / "svd_tiny.safetensors")

    cfg = load_config("camera_lora", "tiny", [*FAST, "train.num_frames=2"])
    stage = STAGES[cfg.train.name](stage=OmegaConf.to_container(cfg.train, resolve=True))
    counts = load_init_weights(stage, official)
    fresh = sum(".lora_" in k or k.startswith("conditioner.") for k in stage.state_dict())  # towers: open_clip file
    assert counts["copied"] == 2 * len(unet) + 1 and counts["new"] == fresh and counts["dropped"] == 0
    state = stage.state_dict()

    def stage_key(name: str) -> str:
        """The stage's name of a released UNet tensor (LoRA wraps its targets' weights as `.base.`)."""
        module, leaf = name.rsplit(".", 1)
        return f"unet.{name}" if f"unet.{name}" in state else f"unet.{module}.base.{leaf}"

    assert all(torch.equal(state[stage_key(name)], value) for name, value in unet.items())
    assert torch.equal(stage.autoencoder.mix.weight, tensors["first_stage_model.mix.weight"])

    result = tiny_run("i2v", tmp_path / "i2v", clip_table, "train.num_frames=2", f"init_from={official}")
    assert result["steps"] == 2 and result["init_weights"]["copied"] == 2 * len(unet) + 1

    write_state_dict({"cond_stage_model.x": torch.zeros(1)}, tmp_path / "text_only.safetensors")
    with pytest.raises(UserError, match="neither 'model.diffusion_model"):
        load_init_weights(stage, tmp_path / "text_only.safetensors")
