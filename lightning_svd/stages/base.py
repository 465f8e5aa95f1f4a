"""The shared LightningModule of every training stage: one backbone, one loss, one sampler.

A stage = frozen autoencoder + conditioner (text / image / micro-conditioning, per-key dropout) + VideoUNet
wrapped in a `Denoiser` with the configured preconditioning. `training_step` encodes the clip's frames,
draws ONE sigma per clip (shared by its T frames), and minimises the weighted denoising loss. Subclasses
state only what differs: which conditioning they assemble and which parameters train.

For callbacks and tasks:
- `generate(prompts=..., images=..., seed=..., num_frames=..., steps=...)` samples videos (uint8, (B, T, H, W, 3))
  with the configured sampler (Euler EDM on Karras sigmas, or DDIM for the discrete proxy) and guider, from
  the EMA weights when EMA is on.
- `with stage.ema_weights(): ...` runs any code on the EMA weights (a no-op context without EMA).

Randomness (sigmas, noise, dropout, cond_aug) comes from a generator seeded by (seed, step, rank),
so a resumed run repeats exactly what an uninterrupted one does.

Precomputed batches (shards, `data_modules/shards.py`) carry the autoencoder posterior's `latent_mean` and
`latent_std` (B, T, C, h, w) instead of `video`, and the frozen embedders' outputs under their `precomputed_key`s;
the stage then encodes nothing and draws the latents as mean + std * noise from a stream of its own, so the sigmas
and noise of the step are those an online run draws.
"""

import contextlib
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import lightning as L
import torch
from torch import nn

from data_modules.motion_buckets import MotionBuckets
from lightning_svd.diffusion import build_diffusion
from lightning_svd.errors import UserError
from lightning_svd.models import build_unet, load_unet
from lightning_svd.models.conditioners import Conditioner, ConditioningInput, MicroConditioningEmbedder
from lightning_svd.stages.components import build_stage_autoencoder, build_text_encoder
from lightning_svd.stages.ema import ParameterEMA

SIGMA_BUCKET_DRAWS = 20000
LATENT_STREAM = 1
"""`step_generator` stream of the posterior samples of precomputed latents."""


class DiffusionStage(L.LightningModule):
    """Base stage: `hparams` is the experiment's `stage` section (see experiments/defaults.yaml)."""

    generates_from = "prompt"
    """What `generate` needs: "prompt" (texts), "image" (first frames) or "first_and_last_frames"."""

    trains_from_precomputed = True
    """Whether a precomputed batch (latents and embeddings from shards, no frames) can train this stage."""

    def __init__(self, stage: Mapping[str, Any], motion_buckets: Mapping[str, Any] | None = None, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        cfg = self.hparams.stage
        self.num_frames = int(cfg["num_frames"])
        self.seed = seed
        self.motion_buckets = MotionBuckets.from_dict(motion_buckets) if motion_buckets else None
        self.autoencoder = build_stage_autoencoder(cfg["autoencoder"])
        self.conditioner = self.build_conditioner(cfg)
        self.unet = self.build_network(cfg)
        self.unet.set_gradient_checkpointing(bool(cfg["gradient_checkpointing"]))
        self.diffusion = build_diffusion(per_channel_data_std(without_unset_keys(cfg["diffusion"]), self.autoencoder))
        self.denoiser = self.diffusion.denoiser(self.unet)
        self.sigma_bucket_edges = self.ln_sigma_quantiles(int(cfg["sigma_buckets"]))
        self.build_extras(cfg)
        ema = cfg["ema"]
        self.ema = ParameterEMA(self, float(ema["decay"]), self.ema_prefixes()) if ema["enabled"] else None

    # --- what subclasses change -------------------------------------------------------------------------------

    def conditioning_inputs(self, cfg: Mapping) -> list[ConditioningInput]:
        """Text tokens as context (dropped to "" at `text.drop_rate`) plus the micro-conditioning vector."""
        text = ConditioningInput(
            build_text_encoder(cfg["open_clip"], cfg["text"]["layer"]), ["txt"],
            drop_rate=float(cfg["text"]["drop_rate"]), unconditional="empty_text", precomputed_key="txt_embedding",
        )
        return [text, *self.micro_conditioning(cfg)]

    def micro_conditioning(self, cfg: Mapping) -> list[ConditioningInput]:
        keys = list(cfg["micro_conditioning"]["keys"])
        if not keys:
            return []
        return [ConditioningInput(MicroConditioningEmbedder(keys, int(cfg["micro_conditioning"]["dim"])), keys)]

    def extra_input_channels(self) -> int:
        """Channels concatenated to the noisy latents (conditioning latents, masks)."""
        return 0

    def prepare_batch(self, batch: dict, generator: torch.Generator | None) -> dict:
        """Add what the conditioner reads besides the data (for example the conditioning frame)."""
        return batch

    def network_condition(self, cond: dict, batch: dict, num_frames: int, generator) -> dict:
        """The Denoiser's keyword inputs from the conditioner's output."""
        network = {"context": cond["crossattn"], "num_frames": num_frames}
        if "vector" in cond:
            network["y"] = cond["vector"]
        if "concat" in cond:
            network["concat"] = cond["concat"]
        return network

    def build_extras(self, cfg: Mapping) -> None:
        """Learned parts besides the UNet (for example the interpolation mask embedding)."""

    def ema_prefixes(self) -> tuple[str, ...]:
        """Names of the weights that train and are averaged: the UNet by default."""
        return ("unet.",)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n.startswith(self.ema_prefixes())]

    # --- building ---------------------------------------------------------------------------------------------

    def build_conditioner(self, cfg: Mapping) -> Conditioner:
        return Conditioner(self.conditioning_inputs(cfg))

    def build_network(self, cfg: Mapping) -> nn.Module:
        """A preset UNet whose I/O sizes follow the autoencoder and the conditioner, or a UNet weight file."""
        unet_cfg = cfg["unet"]
        if unet_cfg.get("weights"):
            return load_unet(unet_cfg["weights"], **dict(unet_cfg["options"]))
        latent = self.autoencoder.latent_channels
        sizes = {
            "in_channels": latent + self.extra_input_channels(),
            "out_channels": latent,
            "adm_in_channels": self.vector_dim() or None,
            "context_dim": self.context_dim(),
        }
        return build_unet(unet_cfg["preset"], **{**sizes, **dict(unet_cfg["options"])})

    def vector_dim(self) -> int:
        return sum(e.embedder.output_dim for e in self.conditioner.inputs if hasattr(e.embedder, "output_dim"))

    def context_dim(self) -> int:
        for entry in self.conditioner.inputs:
            embedder = entry.embedder
            if hasattr(embedder, "width"):
                return embedder.width
            if hasattr(embedder, "embed_dim"):
                return embedder.embed_dim
        raise ValueError("a stage needs a context embedder (text or image)")

    def ln_sigma_quantiles(self, buckets: int) -> torch.Tensor:
        """Inner edges of `buckets` equally likely ln-sigma ranges under the training noise distribution."""
        generator = torch.Generator().manual_seed(0)
        sigmas = self.diffusion.loss.noise_distribution(SIGMA_BUCKET_DRAWS, 1, device="cpu", generator=generator)
        probabilities = torch.arange(1, buckets, device="cpu") / buckets
        return torch.quantile(sigmas.log().double(), probabilities.double()).float()

    # --- training ---------------------------------------------------------------------------------------------

    def step_generator(self, batch_idx: int, stream: int = 0) -> torch.Generator:
        """Seeded by (seed, optimizer step, micro-batch, rank): identical draws after a resume. Another `stream`
        draws independently of stream 0, which the sigmas, noise and dropout use."""
        accumulate = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        key = (self.seed * 1_000_003 + self.global_step * 10_007 + batch_idx % accumulate) * 101 + self.global_rank
        return torch.Generator(device=self.device).manual_seed((key + stream * 0x9E3779B97F4A7C15) % (2**63))

    @torch.no_grad()
    def encode_frames(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) in [-1, 1] -> diffusion latents (B*T, C, h, w)."""
        frames = video.flatten(0, 1)
        with torch.autocast(device_type=frames.device.type, enabled=False):
            return self.autoencoder.encode_to_latents(frames.float(), sample=True).float()

    def clip_latents(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The clips' diffusion latents (B*T, C, h, w): a draw from the precomputed posterior where the batch
        carries it, else the frames encoded."""
        if "latent_mean" not in batch:
            return self.encode_frames(batch["video"])
        mean, std = batch["latent_mean"].flatten(0, 1), batch["latent_std"].flatten(0, 1)
        generator = self.step_generator(batch_idx, LATENT_STREAM)
        noise = torch.randn(mean.shape, generator=generator, device=generator.device, dtype=mean.dtype)
        return mean + std * noise.to(mean.device)

    def precomputable(self) -> dict[str, nn.Module]:
        """The frozen encoders a precomputed batch may stand in for, by batch key (`latent_mean` / `latent_std`:
        the autoencoder)."""
        embedders = {entry.precomputed_key: entry.embedder for entry in self.conditioner.inputs
                     if entry.precomputed_key}
        return {"latent": self.autoencoder, **embedders}

    def compute_loss(self, batch: dict, batch_idx: int):
        generator = self.step_generator(batch_idx)
        batch = self.prepare_batch(dict(batch), generator)
        frames = batch["latent_mean"] if "latent_mean" in batch else batch["video"]
        num_frames = int(frames.shape[1])
        latents = self.clip_latents(batch, batch_idx)
        cond = self.conditioner(batch, num_frames=num_frames, generator=generator)
        network = self.network_condition(cond, batch, num_frames, generator)
        denoise = partial(self._denoise, cond=network)
        return self.diffusion.loss(denoise, latents, num_frames=num_frames, generator=generator)

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: Mapping) -> torch.Tensor:
        return self.denoiser(x, sigma, cond)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        output = self.compute_loss(batch, batch_idx)
        clips = output.per_clip.shape[0]
        self.log("train/loss", output.loss, prog_bar=True, batch_size=clips, sync_dist=True)
        buckets = torch.bucketize(output.sigmas.log().float().cpu(), self.sigma_bucket_edges)
        for bucket in buckets.unique().tolist():
            chosen = (buckets == bucket).to(output.per_clip.device)
            self.log(f"train/loss_lnsigma_q{bucket + 1}", output.per_clip[chosen].mean().detach(),
                     batch_size=int(chosen.sum()))
        return output.loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update()

    def configure_optimizers(self):
        opt = self.hparams.stage["optimizer"]
        params = self.trainable_parameters()
        # The fused kernel updates every tensor in one pass: 5x faster than the per-tensor loop on CPU.
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        optimizer = torch.optim.AdamW(
            params, lr=float(opt["lr"]), weight_decay=float(opt["weight_decay"]),
            betas=(float(opt["beta1"]), float(opt["beta2"])), fused=fused,
        )
        warmup = int(opt["warmup_steps"])
        decay = str(opt.get("decay", "none"))
        if decay not in ("none", "linear"):
            raise UserError(f"unknown train.optimizer.decay {decay!r}; valid: none, linear")
        total = self.trainer.max_steps if decay == "linear" and self.trainer is not None else -1
        if decay == "linear" and total <= 0:
            raise UserError("train.optimizer.decay=linear needs trainer.max_steps (the step where the lr reaches 0)")

        def factor(step: int) -> float:
            warm = min(1.0, (step + 1) / max(warmup, 1))
            return warm * max(0.0, 1.0 - step / total) if total > 0 else warm

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- EMA in checkpoints -----------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])

    @contextlib.contextmanager
    def ema_weights(self):
        """Run the enclosed code on the EMA weights (unchanged weights when EMA is off)."""
        if self.ema is None:
            yield self
            return
        with self.ema.applied():
            yield self

    # --- sampling ---------------------------------------------------------------------------------------------

    def sampling_batch(self, prompts, images, count: int, num_frames: int, fps: float, motion_bucket_id: int) -> dict:
        """The conditioner's inputs for sampling (text stages need prompts)."""
        if prompts is None:
            raise ValueError(f"{type(self).__name__}.generate needs prompts=[...] (one text per video)")
        return {"txt": list(prompts), "fps_id": torch.full((count,), fps - 1.0, device=self.device),
                "motion_bucket_id": torch.full((count,), float(motion_bucket_id), device=self.device)}

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str] | None = None,
        images: torch.Tensor | None = None,
        seed: int = 0,
        num_frames: int | None = None,
        steps: int | None = None,
        fps: float = 7.0,
        motion_bucket_id: int = 127,
    ) -> torch.Tensor:
        """Sample videos as uint8 (B, T, H, W, 3) from the EMA weights (if any).

        prompts: one text per video (text stages); images: conditioning frames (B, 3, H, W) in [-1, 1]
        (image-to-video; interpolation takes (B, 2, 3, H, W): first and last frame).
        """
        count = len(prompts) if prompts is not None else len(images)
        num_frames = num_frames or self.num_frames
        cfg = self.hparams.stage
        generator = torch.Generator(device=self.device).manual_seed(seed)
        batch = self.sampling_batch(prompts, images, count, num_frames, fps, motion_bucket_id)
        batch = self.prepare_sampling_batch(batch, generator)
        factor = self.autoencoder.downsampling_factor
        shape = (count * num_frames, self.autoencoder.latent_channels,
                 int(cfg["height"]) // factor, int(cfg["width"]) // factor)
        was_training = self.training
        self.eval()
        try:
            with self.ema_weights():
                cond, uncond = self.conditioner.conditional_and_unconditional(batch, num_frames, generator)
                cond = self.network_condition(cond, batch, num_frames, generator)
                uncond = self.network_condition(uncond, batch, num_frames, generator)
                latents = self.diffusion.sample(self.denoiser, shape, cond, uncond, generator, self.device,
                                                num_frames=num_frames, num_steps=steps)
                frames = self.autoencoder.decode_latents(latents.float(), num_frames=num_frames)
        finally:
            self.train(was_training)
        frames = ((frames.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
        return frames.unflatten(0, (count, num_frames)).permute(0, 1, 3, 4, 2).cpu()

    def prepare_sampling_batch(self, batch: dict, generator: torch.Generator) -> dict:
        return batch



def per_channel_data_std(diffusion: dict, autoencoder) -> dict:
    """A `sigma_data` list of the preconditioning or loss weighting that holds one value per Haar level of the
    wavelet stand-in (patch means first) becomes one value per latent channel; other values pass unchanged."""
    for part in ("preconditioning", "weighting"):
        spec = diffusion.get(part)
        values = spec.get("sigma_data") if isinstance(spec, Mapping) else None
        if isinstance(values, list | tuple) and len(values) != autoencoder.latent_channels:
            if not hasattr(autoencoder, "per_channel"):
                raise ValueError(f"diffusion.{part}.sigma_data lists {len(values)} values; give one per latent "
                                 f"channel ({autoencoder.latent_channels})")
            diffusion[part] = {**spec, "sigma_data": autoencoder.per_channel(values)}
    return diffusion


def without_unset_keys(diffusion: Mapping) -> dict:
    """Config nodes list the keys of several choices (so any can be set from the command line): a null part
    (preconditioning, sampler, ...) is the preset's, and a part's null keys (noise, guider) are not its
    parameters."""
    diffusion = {k: v for k, v in dict(diffusion).items() if v is not None}
    if "noise" in diffusion:
        diffusion["noise"] = {k: v for k, v in diffusion["noise"].items() if v is not None}
    sampling = {k: v for k, v in dict(diffusion.get("sampling", {})).items() if v is not None}
    if "guider" in sampling:
        sampling["guider"] = {k: v for k, v in sampling["guider"].items() if v is not None}
    diffusion["sampling"] = sampling
    return diffusion
