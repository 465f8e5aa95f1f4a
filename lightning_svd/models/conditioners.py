"""Conditioning signals for the VideoLDM backbone, each a small module with one job, and their container.

Every embedder returns one row per *frame* (B*T rows, clips frame-contiguous) so the container can
concatenate outputs directly. Inputs follow one convention: per-clip values have B rows (texts, images,
scalars of shape (B,)), per-frame scalars have shape (B, T).

open_clip towers are built from configs only (`pretrained=None`): weights come from local files, nothing is
ever downloaded, and the tokenizer is open_clip's bundled BPE `SimpleTokenizer`.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lightning_svd.models.autoencoder_checkpoints import load_strict
from lightning_svd.models.embeddings import timestep_embedding
from lightning_svd.models.state_dict_io import CheckpointError, read_state_dict

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TEXT_HEAD_KEYS = ("text_projection", "logit_scale", "logit_bias", "attn_mask")


def repeat_per_frame(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, ...) -> (B*T, ...), each clip's row repeated for its T frames."""
    return x.repeat_interleave(num_frames, dim=0)


def _randn(shape, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normal noise drawn on the generator's device (so CPU generators stay deterministic), then moved."""
    source = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=source, dtype=torch.float32).to(device, dtype)


def _rand(count: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    source = generator.device if generator is not None else device
    return torch.rand(count, generator=generator, device=source).to(device)


def open_clip_config(model: str | Mapping) -> dict:
    """The open_clip model config for a built-in model name (e.g. "ViT-H-14") or a config dict, checked to
    need neither Hugging Face nor timm (which would download or are not installed)."""
    import open_clip

    if isinstance(model, str):
        config = open_clip.get_model_config(model)
        if config is None:
            raise ValueError(
                f"unknown open_clip model {model!r}; use a built-in name such as 'ViT-H-14' or a config dict"
            )
    else:
        config = copy.deepcopy(dict(model))
    if not {"embed_dim", "text_cfg", "vision_cfg"} <= set(config):
        raise ValueError(f"open_clip config needs 'embed_dim', 'text_cfg' and 'vision_cfg'; got {sorted(config)}")
    remote = [k for k in ("hf_model_name", "hf_tokenizer_name") if config["text_cfg"].get(k)]
    if remote or config["vision_cfg"].get("timm_model_name"):
        raise ValueError(
            f"open_clip model {model if isinstance(model, str) else 'config'} needs a Hugging Face or timm tower "
            f"({remote or ['timm_model_name']}); only native open_clip towers with the bundled tokenizer are supported"
        )
    return config


def load_open_clip_weights(module: nn.Module, path: str | Path, prefix: str | None = None) -> None:
    """Load one open_clip tower (our module's names are open_clip's) strictly from a local file.

    Finds the tower inside an open_clip checkpoint, an SD 2.1 checkpoint (`cond_stage_model.model.`) or an
    official SVD file (`conditioner.embedders.0.open_clip.model.`); tensors of the other tower and of the
    contrastive heads are ignored. Several equally good candidate towers in one file need `prefix`.
    """
    state_dict = read_state_dict(path)
    expected = list(module.state_dict())
    if prefix is None:
        marker = expected[0]
        candidates = {k[: -len(marker)] for k in state_dict if k.endswith(marker)}
        if not candidates:
            raise CheckpointError(f"{path} holds no open_clip {type(module).__name__} weights (no '*{marker}')")
        # The prefix under which most of our tensor names exist (a bare "visual.positional_embedding" also
        # ends like the text tower's marker).
        score = {p: sum(p + k in state_dict for k in expected) for p in candidates}
        best = sorted(p for p in candidates if score[p] == max(score.values()))
        if len(best) > 1:
            raise CheckpointError(f"{path} holds several candidate towers {best}; pass a prefix to choose one")
        prefix = best[0]
    own = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    visual = any(k.startswith("visual.") for k in expected)
    if visual:
        own = {k: v for k, v in own.items() if k.startswith("visual.")}
    else:
        own = {k: v for k, v in own.items() if not k.startswith("visual.") and k not in TEXT_HEAD_KEYS}
    load_strict(module, own, str(path), f"open_clip {'image' if visual else 'text'} tower")


def forget_features(encoder: OpenCLIPTextEncoder, _incompatible_keys) -> None:
    """New weights make a text tower's cached caption features stale."""
    encoder.feature_cache.clear()


class OpenCLIPTextEncoder(nn.Module):
    """open_clip text transformer returning per-token features (B*T, L, width).

    `layer="penultimate"` (SD 2.1, the paper's text-to-video models) stops one block early; the final
    LayerNorm is applied either way, as SD 2.1 did. Without `weights` the tower's random weights come from a fixed
    seed (`RANDOM_TOWER_SEED`, whatever the run's seed), so like a pretrained frozen tower it is the same in every run:
    a UNet trained on its features (the tiny image model every ablation arm starts from) meets the same features
    wherever its weights are loaded.
    """

    LAYERS = ("last", "penultimate")
    RANDOM_TOWER_SEED = 0
    FEATURE_CACHE_SIZE = 256
    accepts_text = True

    def __init__(
        self,
        model: str | Mapping = "ViT-H-14",
        weights: str | Path | None = None,
        layer: str = "penultimate",
        weights_prefix: str | None = None,
    ):
        super().__init__()
        import open_clip
        from open_clip.model import CLIPTextCfg, _build_text_tower

        if layer not in self.LAYERS:
            raise ValueError(f"layer must be one of {self.LAYERS}, got {layer!r}")
        config = open_clip_config(model)
        text_config = CLIPTextCfg(**config["text_cfg"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.RANDOM_TOWER_SEED)
            tower = _build_text_tower(config["embed_dim"], text_config, quick_gelu=config.get("quick_gelu", False))
        self.token_embedding = tower.token_embedding
        self.positional_embedding = tower.positional_embedding
        self.transformer = tower.transformer
        self.ln_final = tower.ln_final
        context = text_config.context_length
        self.register_buffer("attn_mask", torch.full((context, context), float("-inf")).triu(1), persistent=False)
        self.tokenizer = open_clip.SimpleTokenizer(context_length=context)
        self.layer = layer
        self.width = text_config.width
        self.feature_cache = OrderedDict()
        self.register_load_state_dict_post_hook(forget_features)
        if weights is not None:
            load_open_clip_weights(self, weights, weights_prefix)

    @property
    def depth(self) -> int:
        """Number of transformer blocks run."""
        blocks = len(self.transformer.resblocks)
        return blocks - 1 if self.layer == "penultimate" else blocks

    def forward(self, texts: Sequence[str], num_frames: int = 1) -> torch.Tensor:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings (one per clip), not a single string")
        texts = list(texts)
        if any(p.requires_grad for p in self.parameters()):
            return repeat_per_frame(self.encode(texts), num_frames)
        return repeat_per_frame(self.cached_features(texts), num_frames)

    def encode(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.token_embedding.weight.device)
        x = self.token_embedding(tokens) + self.positional_embedding
        if not self.transformer.batch_first:
            x = x.transpose(0, 1)
        for block in self.transformer.resblocks[: self.depth]:
            x = block(x, attn_mask=self.attn_mask.to(x.dtype))
        if not self.transformer.batch_first:
            x = x.transpose(0, 1)
        return self.ln_final(x)

    def cached_features(self, texts: list[str]) -> torch.Tensor:
        """A frozen tower's features of each caption, computed once: a training corpus repeats its captions every
        epoch, and on the tiny profile the tokenizer and tower cost about 5 % of the image model's step
        (benchmarks/text_feature_cache.py). The most recent
        `FEATURE_CACHE_SIZE` captions are kept, keyed by autocast state, device and dtype as well as by text."""
        device = self.token_embedding.weight.device
        mode = (device, self.token_embedding.weight.dtype, torch.is_autocast_enabled(device.type))
        cache = self.feature_cache
        missing = [text for text in dict.fromkeys(texts) if (text, mode) not in cache]
        if missing:
            with torch.no_grad():
                for text, features in zip(missing, self.encode(missing), strict=True):
                    cache[(text, mode)] = features
        features = torch.stack([cache[(text, mode)] for text in texts])
        for text in texts:
            cache.move_to_end((text, mode))
        while len(cache) > self.FEATURE_CACHE_SIZE:
            cache.popitem(last=False)
        return features


class CLIPImageEmbedder(nn.Module):
    """open_clip image tower: images in [-1, 1] -> one token (B*T, 1, embed_dim) (1024 for ViT-H-14).

    Images are resized to the tower's size with an antialiased bicubic filter, mapped to [0, 1] and
    normalised with the CLIP mean and std.
    """

    def __init__(
        self, model: str | Mapping = "ViT-H-14", weights: str | Path | None = None, weights_prefix: str | None = None
    ):
        super().__init__()
        from open_clip.model import _build_vision_tower

        config = open_clip_config(model)
        self.visual = _build_vision_tower(
            config["embed_dim"], config["vision_cfg"], quick_gelu=config.get("quick_gelu", False)
        )
        size = self.visual.image_size
        self.image_size = tuple(size) if isinstance(size, Sequence) else (size, size)
        preprocess = config.get("preprocess_cfg", {})
        self.register_buffer("mean", torch.tensor(preprocess.get("mean", CLIP_MEAN)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preprocess.get("std", CLIP_STD)).view(1, 3, 1, 1), persistent=False)
        self.embed_dim = config["embed_dim"]
        if weights is not None:
            load_open_clip_weights(self, weights, weights_prefix)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float(), size=self.image_size, mode="bicubic", align_corners=False, antialias=True)
        return ((x + 1.0) / 2.0 - self.mean) / self.std

    def forward(self, images: torch.Tensor, num_frames: int = 1) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"images must be (B, 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        embedding = self.visual(self.preprocess(images).to(next(self.visual.parameters()).dtype))
        if isinstance(embedding, tuple):
            embedding = embedding[0]
        return repeat_per_frame(embedding[:, None], num_frames)


class MicroConditioningEmbedder(nn.Module):
    """Scalars such as fps_id, motion_bucket_id and cond_aug -> concatenated sinusoidal embeddings.

    Each key gets `timestep_embedding(value, dim)` ([cos, sin], max period 10000; 256-d by default), in
    the configured key order: output (B*T, sum of dims). Values are per clip (B,) or per frame (B, T).
    """

    def __init__(self, keys: Sequence[str] = ("fps_id", "motion_bucket_id", "cond_aug"), dim: int | Mapping = 256):
        super().__init__()
        if not keys:
            raise ValueError("MicroConditioningEmbedder needs at least one key")
        self.keys = tuple(keys)
        dims = dict(dim) if isinstance(dim, Mapping) else dict.fromkeys(self.keys, dim)
        missing = [k for k in self.keys if k not in dims]
        if missing:
            raise ValueError(f"no embedding size for micro-conditioning key(s) {missing}")
        self.dims = tuple(int(dims[k]) for k in self.keys)

    @property
    def output_dim(self) -> int:
        return sum(self.dims)

    def forward(self, *values, num_frames: int = 1) -> torch.Tensor:
        if len(values) != len(self.keys):
            raise ValueError(f"expected values for {self.keys}, got {len(values)} value(s)")
        embeddings = []
        for key, dim, value in zip(self.keys, self.dims, values):
            value = torch.as_tensor(value)
            if value.ndim == 1:
                value = repeat_per_frame(value, num_frames)
            elif value.ndim == 2 and value.shape[1] == num_frames:
                value = value.flatten()
            else:
                raise ValueError(
                    f"micro-conditioning {key!r} must be per clip (B,) or per frame (B, {num_frames}); "
                    f"got shape {tuple(value.shape)}"
                )
            embeddings.append(timestep_embedding(value, dim))
        return torch.cat(embeddings, dim=-1)


class NoiseAugmentedFrameEncoder(nn.Module):
    """The image-to-video concat input: conditioning frame + cond_aug * noise, encoded to the autoencoder
    posterior's mode, NOT multiplied by the latent scale factor, repeated over the clip's T frames.

    cond_aug (one per clip) is used as given or drawn with ln(cond_aug) ~ N(log_sigma_mean, log_sigma_std^2)
    (-3, 0.5 in SVD training); the values used are returned so the micro-conditioning can see them.
    The autoencoder is usually the stage's own (frozen) instance; a frozen ConditioningInput freezes it.
    """

    produces = ("cond_aug",)

    def __init__(self, autoencoder: nn.Module, log_sigma_mean: float = -3.0, log_sigma_std: float = 0.5):
        super().__init__()
        self.encoder = autoencoder
        self.log_sigma_mean = log_sigma_mean
        self.log_sigma_std = log_sigma_std

    def sample_cond_aug(self, count: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        normal = _randn((count,), generator, device, torch.float32)
        return torch.exp(self.log_sigma_mean + self.log_sigma_std * normal)

    def forward(
        self,
        frames: torch.Tensor,
        num_frames: int = 1,
        cond_aug: torch.Tensor | float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if frames.ndim != 4:
            raise ValueError(f"conditioning frames must be (B, 3, H, W) in [-1, 1], got {tuple(frames.shape)}")
        count = frames.shape[0]
        if cond_aug is None:
            cond_aug = self.sample_cond_aug(count, generator, frames.device)
        cond_aug = torch.as_tensor(cond_aug, dtype=torch.float32, device=frames.device).expand(count).clone()
        noisy = frames.float() + cond_aug.view(-1, 1, 1, 1) * _randn(
            frames.shape, generator, frames.device, torch.float32
        )
        dtype = next(self.encoder.parameters()).dtype
        with torch.autocast(device_type=frames.device.type, enabled=False):
            latents = self.encoder.encode(noisy.to(dtype)).mode()
        return repeat_per_frame(latents, num_frames), {"cond_aug": cond_aug}


class ConditioningInput(nn.Module):
    """One conditioning signal: the batch keys feeding an embedder, its classifier-free-guidance dropout
    rate, and what the unconditional branch gets: `zeros`, `keep` (the same value) or `empty_text`
    (the embedding of "" for every prompt); default `keep`. Dropped training samples get the
    unconditional value.

    A frozen embedder (the default) runs without gradients and stays in eval mode. A frozen embedder may name a
    `precomputed_key`: a batch carrying it holds the embedder's per-clip output (B, ...) computed ahead of training
    (shards), which is used instead of running the embedder.
    """

    UNCONDITIONAL = ("zeros", "keep", "empty_text")

    def __init__(
        self,
        embedder: nn.Module,
        input_keys: Sequence[str],
        drop_rate: float = 0.0,
        unconditional: str = "keep",
        optional_keys: Sequence[str] = (),
        trainable: bool = False,
        precomputed_key: str | None = None,
    ):
        super().__init__()
        if unconditional not in self.UNCONDITIONAL:
            raise ValueError(f"unconditional must be one of {self.UNCONDITIONAL}, got {unconditional!r}")
        if not 0.0 <= drop_rate <= 1.0:
            raise ValueError(f"drop_rate must be in [0, 1], got {drop_rate}")
        if drop_rate > 0 and unconditional == "keep":
            raise ValueError(f"{input_keys}: a dropped input needs unconditional 'zeros' or 'empty_text', not 'keep'")
        if not input_keys:
            raise ValueError("a conditioning input needs at least one batch key")
        if unconditional == "empty_text" and not getattr(embedder, "accepts_text", False):
            raise ValueError(f"{type(embedder).__name__} does not take text; use unconditional 'zeros' or 'keep'")
        if precomputed_key and (trainable or getattr(embedder, "produces", ())):
            raise ValueError(f"{type(embedder).__name__}: only a frozen embedder without side outputs is precomputed")
        self.precomputed_key = precomputed_key
        self.embedder = embedder
        self.input_keys = tuple(input_keys)
        self.optional_keys = tuple(optional_keys)
        self.drop_rate = float(drop_rate)
        self.unconditional = unconditional
        self.trainable = trainable
        if not trainable:
            embedder.requires_grad_(False)
            embedder.eval()

    @property
    def produces(self) -> tuple[str, ...]:
        return tuple(getattr(self.embedder, "produces", ()))

    def train(self, mode: bool = True) -> ConditioningInput:
        super().train(mode)
        if not self.trainable:
            self.embedder.eval()
        return self

    def embed(
        self, batch: Mapping, num_frames: int, generator: torch.Generator | None, empty_text: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict]:
        """(per-frame output, batch values it produced); `empty_text` marks clips whose prompt becomes ""."""
        if self.precomputed_key and self.precomputed_key in batch:
            return self.precomputed(batch[self.precomputed_key], num_frames, empty_text), {}
        missing = [k for k in self.input_keys if k not in batch]
        if missing:
            raise KeyError(f"batch lacks {missing} needed by {type(self.embedder).__name__}; batch has {sorted(batch)}")
        values = [batch[k] for k in self.input_keys]
        if empty_text is not None:
            values[0] = ["" if drop else text for text, drop in zip(values[0], empty_text.tolist())]
        kwargs = {k: batch[k] for k in self.optional_keys if k in batch}
        if self.produces:
            kwargs["generator"] = generator
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            result = self.embedder(*values, num_frames=num_frames, **kwargs)
        return result if isinstance(result, tuple) else (result, {})

    @torch.no_grad()
    def precomputed(self, embedding: torch.Tensor, num_frames: int, empty_text: torch.Tensor | None) -> torch.Tensor:
        """The stored per-clip embedding repeated per frame; clips whose prompt is dropped get the embedding of ""."""
        if empty_text is not None and bool(empty_text.any()):
            empty = self.embedder([""]).to(embedding)
            embedding = torch.where(empty_text.to(embedding.device).view(-1, *[1] * (embedding.ndim - 1)), empty,
                                    embedding)
        return repeat_per_frame(embedding, num_frames)


class Conditioner(nn.Module):
    """Assembles `{"crossattn": (N, L, D), "vector": (N, adm), "concat": (N, C, h, w)}` (N = B*T) from a
    batch: each output is routed by its rank and concatenated in config order (crossattn along features,
    vector and concat along channels). Inputs producing batch values (the noise-augmented frame encoder
    and its cond_aug) run first.
    """

    OUTPUT_BY_RANK = {2: "vector", 3: "crossattn", 4: "concat"}
    CONCAT_DIM = {"vector": 1, "crossattn": 2, "concat": 1}

    def __init__(self, inputs: Sequence[ConditioningInput]):
        super().__init__()
        if not inputs:
            raise ValueError("a Conditioner needs at least one ConditioningInput")
        self.inputs = nn.ModuleList(inputs)

    def _run_order(self) -> list[int]:
        indices = range(len(self.inputs))
        return [i for i in indices if self.inputs[i].produces] + [i for i in indices if not self.inputs[i].produces]

    def _embed_all(
        self, batch: Mapping, num_frames: int, generator: torch.Generator | None, drop: bool
    ) -> tuple[list[torch.Tensor], dict]:
        work = dict(batch)
        outputs: list[torch.Tensor | None] = [None] * len(self.inputs)
        for index in self._run_order():
            entry = self.inputs[index]
            dropped = None
            if drop and entry.drop_rate > 0 and entry.unconditional == "empty_text":
                dropped = _rand(len(work[entry.input_keys[0]]), generator, torch.device("cpu")) < entry.drop_rate
            output, produced = entry.embed(work, num_frames, generator, empty_text=dropped)
            if drop and entry.drop_rate > 0 and entry.unconditional == "zeros":
                clips = output.shape[0] // num_frames
                kept = _rand(clips, generator, output.device) >= entry.drop_rate
                output = output * repeat_per_frame(kept, num_frames).view(-1, *[1] * (output.ndim - 1)).to(output.dtype)
            work.update(produced)
            outputs[index] = output
        return outputs, work

    def _assemble(self, outputs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        grouped: dict[str, list[torch.Tensor]] = {}
        rows = outputs[0].shape[0]
        for entry, output in zip(self.inputs, outputs):
            if output.shape[0] != rows:
                raise ValueError(
                    f"{type(entry.embedder).__name__} returned {output.shape[0]} rows, others {rows}: every "
                    "embedder must return one row per frame (B*T)"
                )
            kind = self.OUTPUT_BY_RANK.get(output.ndim)
            if kind is None:
                raise ValueError(f"{type(entry.embedder).__name__} returned rank {output.ndim}; expected 2, 3 or 4")
            grouped.setdefault(kind, []).append(output)
        return {kind: torch.cat(parts, dim=self.CONCAT_DIM[kind]) for kind, parts in grouped.items()}

    def forward(
        self, batch: Mapping, num_frames: int = 1, generator: torch.Generator | None = None, drop: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """Conditioning for a batch; with `drop` (default: in training mode) each input is replaced by its
        unconditional value for a random `drop_rate` share of clips."""
        outputs, _ = self._embed_all(batch, num_frames, generator, self.training if drop is None else drop)
        return self._assemble(outputs)

    def conditional_and_unconditional(
        self, batch: Mapping, num_frames: int = 1, generator: torch.Generator | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Both guidance branches from one pass (the unconditional one shares cond_aug and kept values)."""
        outputs, work = self._embed_all(batch, num_frames, generator, drop=False)
        unconditional = []
        for entry, output in zip(self.inputs, outputs):
            if entry.unconditional == "keep":
                unconditional.append(output)
            elif entry.unconditional == "zeros":
                unconditional.append(torch.zeros_like(output))
            else:
                everything = torch.ones(len(work[entry.input_keys[0]]), dtype=torch.bool)
                unconditional.append(entry.embed(work, num_frames, generator, empty_text=everything)[0])
        return self._assemble(outputs), self._assemble(unconditional)

    def unconditional(
        self, batch: Mapping, num_frames: int = 1, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """The unconditional branch alone (zero image embedding and concat latent, same vector, empty text)."""
        return self.conditional_and_unconditional(batch, num_frames, generator)[1]


EMBEDDERS = {
    "open_clip_text": OpenCLIPTextEncoder,
    "clip_image": CLIPImageEmbedder,
    "micro_conditioning": MicroConditioningEmbedder,
    "noise_augmented_frame": NoiseAugmentedFrameEncoder,
}


def build_conditioner(specs: Sequence[Mapping], autoencoder: nn.Module | None = None) -> Conditioner:
    """A Conditioner from config entries `{"embedder": name, "input_keys": [...], "options": {...},
    "drop_rate", "unconditional", "optional_keys", "trainable"}`; `noise_augmented_frame` uses `autoencoder`."""
    inputs = []
    for spec in specs:
        spec = dict(spec)
        name = spec.pop("embedder", None)
        if name not in EMBEDDERS:
            raise ValueError(f"unknown embedder {name!r}; choose one of {sorted(EMBEDDERS)}")
        options = dict(spec.pop("options", {}))
        if name == "noise_augmented_frame":
            if autoencoder is None:
                raise ValueError("the noise_augmented_frame embedder needs the autoencoder (autoencoder=...)")
            options["autoencoder"] = autoencoder
            spec.setdefault("optional_keys", ("cond_aug",))
        if "input_keys" not in spec:
            raise ValueError(f"conditioning entry {name!r} needs 'input_keys'")
        if name == "micro_conditioning":
            options.setdefault("keys", tuple(spec["input_keys"]))
        inputs.append(ConditioningInput(EMBEDDERS[name](**options), **spec))
    return Conditioner(inputs)
