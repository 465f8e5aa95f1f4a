"""The shared training machinery, through the train task: image-stage freezing, AdamW warm-up, gradient clipping,
bf16 mixed precision, the gradient-checkpointing switch and the loss per noise-level bucket."""

import logging
import math

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lightning_svd.models import blocks

from .test_conditioning import stage_of
from .tiny import tiny_run

VIDEO = ["train.num_frames=2"]


class Unzero(Callback):
    """A fresh UNet's zero-initialised layers block every gradient behind them: perturb them before training."""

    def on_fit_start(self, trainer, pl_module) -> None:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for parameter in pl_module.unet.parameters():
                if not parameter.any():
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)


class ChangedPerStep(Callback):
    """Names of the UNet parameters each optimizer step changed."""

    def __init__(self):
        self.before = {}
        self.changed = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.before = {n: p.detach().clone() for n, p in pl_module.unet.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        after = dict(pl_module.unet.named_parameters())
        self.changed.append({n for n, value in self.before.items() if not torch.equal(value, after[n])})


class OptimizerProbe(Callback):
    """Per optimizer step: the learning rate, and the total gradient norm before and after Lightning's clipping."""

    def __init__(self):
        self.learning_rates = []
        self.unclipped_norms = []
        self.gradient_norms = []

    @staticmethod
    def total_norm(optimizer) -> float:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()

    def on_train_start(self, trainer, pl_module) -> None:
        def record(optimizer, args, kwargs) -> None:
            self.gradient_norms.append(self.total_norm(optimizer))
            self.learning_rates.append(optimizer.param_groups[0]["lr"])

        trainer.optimizers[0].register_step_post_hook(record)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.unclipped_norms.append(self.total_norm(optimizer))


class UNetDtypes(Callback):
    """The dtype the UNet's first convolution computes in, and the dtype its weights are kept in."""

    def __init__(self):
        self.compute = set()
        self.weights = set()

    def on_fit_start(self, trainer, pl_module) -> None:
        conv = pl_module.unet.input_blocks[0][0]
        conv.register_forward_hook(lambda module, args, output: self.compute.add(output.dtype))
        self.weights.add(conv.weight.dtype)


def video_batch(clips: int, frames: int = 2) -> dict:
    generator = torch.Generator().manual_seed(1)
    return {"video": torch.rand(clips, frames, 3, 16, 16, generator=generator) * 2 - 1, "txt": ["a red square"] * clips,
            "fps_id": torch.full((clips,), 7.0), "motion_bucket_id": torch.full((clips,), 127.0)}


def test_image_stage_trains_only_the_time_embedding_first_then_every_layer(tmp_path, clip_table):
    changes = ChangedPerStep()
    tiny_run("pretrain_image_edm", tmp_path, clip_table, "train.time_embedding_only_steps=2", "trainer.max_steps=3",
             callbacks=[Unzero(), changes])
    first, second, third = changes.changed
    assert first and all(name.startswith("time_embed.") for name in first)
    assert second and all(name.startswith("time_embed.") for name in second)
    assert any(not name.startswith("time_embed.") for name in third)
    assert any(name.startswith("output_blocks.") for name in third)


def test_adamw_warms_up_linearly_and_gradients_are_clipped(tmp_path, clip_table):
    probe = OptimizerProbe()
    tiny_run("pretrain_video", tmp_path, clip_table, *VIDEO, "trainer.max_steps=3", "train.optimizer.lr=0.004",
             "train.optimizer.warmup_steps=4", "trainer.gradient_clip_val=0.001", callbacks=[Unzero(), probe])
    assert probe.learning_rates == pytest.approx([0.001, 0.002, 0.003])
    assert len(probe.gradient_norms) == 3 and all(norm <= 0.001 * (1 + 1e-3) for norm in probe.gradient_norms)
    assert min(probe.unclipped_norms) > 0.01


def test_linear_decay_brings_the_lr_to_zero_at_the_last_step(tmp_path, clip_table):
    probe = OptimizerProbe()
    tiny_run("pretrain_video", tmp_path, clip_table, *VIDEO, "trainer.max_steps=4", "train.optimizer.lr=0.004",
             "train.optimizer.warmup_steps=2", "train.optimizer.decay=linear", callbacks=[Unzero(), probe])
    assert probe.learning_rates == pytest.approx([0.002, 0.003, 0.002, 0.001])


def test_bf16_mixed_precision_runs_the_unet_in_bf16_with_float32_weights(tmp_path, clip_table):
    dtypes = UNetDtypes()
    result = tiny_run("pretrain_video", tmp_path, clip_table, *VIDEO, "trainer.precision=bf16-mixed",
                      callbacks=[dtypes])
    assert result["steps"] == 2 and math.isfinite(result["final_loss"])
    assert dtypes.compute == {torch.bfloat16} and dtypes.weights == {torch.float32}


@pytest.mark.parametrize("enabled", [False, True])
def test_gradient_checkpointing_switch_reaches_every_block(monkeypatch, enabled):
    calls = []
    original = blocks.checkpoint
    monkeypatch.setattr(blocks, "checkpoint", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    stage = stage_of("pretrain_video", "train.num_frames=2", f"train.gradient_checkpointing={str(enabled).lower()}")
    assert all(block.gradient_checkpointing is enabled for block in stage.unet.blocks())
    stage.compute_loss(video_batch(clips=2), 0).loss.backward()
    layers = sum(len(block) for block in stage.unet.blocks())
    assert len(calls) == (layers if enabled else 0)


def test_loss_is_logged_per_noise_level_quartile(monkeypatch):
    stage = stage_of("pretrain_video", "train.num_frames=2")
    logged = {}
    monkeypatch.setattr(stage, "log", lambda name, value, **kwargs: logged.__setitem__(name, float(value)))
    data = video_batch(clips=8)
    stage.training_step(data, 0)
    output = stage.compute_loss(data, 0)
    buckets = torch.bucketize(output.sigmas.log(), stage.sigma_bucket_edges)
    expected = {f"train/loss_lnsigma_q{b + 1}": output.per_clip[buckets == b].mean().item() for b in buckets.unique()}
    assert len(expected) >= 2
    assert logged == pytest.approx({"train/loss": output.loss.item(), **expected})


def test_sigma_bucket_edges_are_quantiles_of_the_training_noise():
    stage = stage_of("pretrain_video", "train.diffusion.noise.p_mean=0.5", "train.diffusion.noise.p_std=1.4")
    quartiles = torch.tensor([-0.6745, 0.0, 0.6745])
    assert torch.allclose(stage.sigma_bucket_edges, 0.5 + 1.4 * quartiles, atol=0.05)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.strategy=fsdp"], "trainer.strategy=fsdp shards the weights that train.ema.enabled=true, "
                                    "callbacks.samples.enabled=true read whole"),
        (["trainer.strategy=fsdp", "train.ema.enabled=false", "callbacks.samples.enabled=false"],
         "Lightning rejects the trainer.* settings: The strategy `fsdp` requires a GPU accelerator"),
        (["trainer.precision=17-mixed"], "trainer.precision must be one of 32-true, bf16-mixed"),
    ],
)
def test_trainer_settings_that_cannot_run_fail_with_one_line(tmp_path, clip_table, capsys, overrides, message):
    from lightning_svd.cli import main

    code = main(["experiment=pretrain_video", f"run_dir={tmp_path}", f"train.data.table={clip_table}", *overrides])
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and last_line.startswith("error: ") and message in last_line
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.unet.preset=huge", "cannot build the text_to_video stage from train.*: unknown UNet preset 'huge'"),
        ("train.autoencoder.kind=vqgan", "train.autoencoder.kind must be space_to_depth or kl, got 'vqgan'"),
        ("train.text.layer=middle", "layer must be one of ('last', 'penultimate'), got 'middle'"),
        ("train.unet.weights=/nonexistent/unet.safetensors", "UNet weights not found: /nonexistent/unet.safetensors"),
    ],
)
def test_bad_stage_settings_fail_with_one_line(tmp_path, clip_table, capsys, override, message):
    from lightning_svd.cli import main

    code = main(["experiment=pretrain_video", f"run_dir={tmp_path}", f"train.data.table={clip_table}", override])
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and last_line.startswith("error: ") and message in last_line


class OptimizerSteps(Callback):
    """Training batches seen and optimizer steps taken."""

    def __init__(self):
        self.batches = 0
        self.steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.steps += 1


def test_the_global_batch_trains_through_gradient_accumulation(tmp_path, clip_table):
    """global 8 with batch 2 on one process: each optimizer step accumulates 4 batches, and results say so."""
    probe = OptimizerSteps()
    results = tiny_run("pretrain_video", tmp_path, clip_table, *VIDEO, "train.global_batch_size=8",
                       "train.data.batch_size=2", callbacks=[probe])
    assert (probe.steps, probe.batches) == (2, 8)
    assert results["global_batch_size"] == 8 and results["effective_batch_size"] == 8


def test_gradient_accumulation_arithmetic_and_refusals():
    from lightning_svd.errors import UserError
    from lightning_svd.training import gradient_accumulation

    assert gradient_accumulation(768, 8, 8, 1) == 12 and gradient_accumulation(8, 2, 2, 1) == 2
    assert gradient_accumulation(None, 2, 4, 3) == 3
    with pytest.raises(UserError, match=r"train.global_batch_size=7 is not a multiple of train.data.batch_size=2"):
        gradient_accumulation(7, 2, 1, 1)
    with pytest.raises(UserError, match=r"trainer.accumulate_grad_batches=3 contradicts"):
        gradient_accumulation(8, 2, 1, 3)


def test_an_unreachable_global_batch_fails_before_any_step(tmp_path, clip_table, capsys):
    from lightning_svd.cli import main

    code = main(["experiment=pretrain_video", f"run_dir={tmp_path}", f"train.data.table={clip_table}",
                 "train.global_batch_size=7", "train.data.batch_size=2"])
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "train.global_batch_size=7 is not a multiple" in last_line
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_bf16_on_a_cpu_that_would_emulate_it_warns_with_the_fix(tmp_path, monkeypatch, caplog):
    from types import SimpleNamespace

    from lightning_svd import training
    from lightning_svd.config import load_config

    cfg = load_config("pretrain_video", "tiny", ["trainer.precision=bf16-mixed"])
    ctx = SimpleNamespace(run_dir=tmp_path, log=logging.getLogger("test_bf16"))
    monkeypatch.setattr(training, "cpu_has_bfloat16", lambda: True)
    with caplog.at_level(logging.WARNING, logger="test_bf16"):
        training.build_trainer(cfg, ctx)
    assert not caplog.records
    monkeypatch.setattr(training, "cpu_has_bfloat16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="test_bf16"):
        training.build_trainer(cfg, ctx)
    assert "no bfloat16 instructions" in caplog.text and "trainer.precision=32-true" in caplog.text
    assert not training.emulated_bfloat16(load_config("pretrain_video", "tiny"))  # float32 never warns
