"""Stage checkpoints: find them (a .ckpt file or a run dir), rebuild a stage, and seed a new stage from one.

Chaining stages changes shapes: image -> video adds temporal layers, text -> image-to-video widens the UNet
input (noisy + conditioning latent) and the vector conditioning. `load_init_weights` copies every tensor
that fits, copies the overlapping block of a tensor that grew (new input channels and vector columns start at
zero, so the new conditioning starts switched off) and leaves new layers as initialised. The earlier stage's
EMA weights are used where it kept them. A stage can also start from released weights: an official single file
(`.safetensors` with `model.diffusion_model.*` and `first_stage_model.*`, e.g. the SVD release) seeds its UNet
and autoencoder.
"""

from pathlib import Path

import torch

from lightning_svd.errors import UserError
from lightning_svd.models.state_dict_io import read_state_dict

OFFICIAL_MODELS = {"model.diffusion_model.": ("unet.", "denoiser.network."), "first_stage_model.": ("autoencoder.",)}


def resolve_checkpoint(path: str | Path) -> Path:
    """A .ckpt file as given, or a run dir's checkpoints/last.ckpt."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / "checkpoints" / "last.ckpt"
        if not candidate.is_file():
            raise UserError(f"{path} is a folder without checkpoints/last.ckpt; give a .ckpt file or a run dir")
        return candidate
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; give a .ckpt file or a training run dir")
    return path


def read_checkpoint(path: str | Path) -> dict:
    return torch.load(resolve_checkpoint(path), map_location="cpu", weights_only=False)


def averaged_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The checkpoint's weights with its EMA shadow (where kept) in place of the raw training weights.

    A module reachable under two names (the UNet is also `denoiser.network`) is saved under both, sharing storage;
    the shadow replaces every name of a tensor, not only the one it was kept under.
    """
    raw = checkpoint["state_dict"]
    names_of = {}
    for key, tensor in raw.items():
        names_of.setdefault((tensor.data_ptr(), tuple(tensor.shape), tensor.stride()), []).append(key)
    state = dict(raw)
    for key, value in checkpoint.get("ema", {}).get("shadow", {}).items():
        tensor = raw.get(key)
        aliases = names_of[(tensor.data_ptr(), tuple(tensor.shape), tensor.stride())] if tensor is not None else [key]
        for alias in aliases:
            state[alias] = value
    return state


def load_stage(path: str | Path, map_location: str = "cpu"):
    """Rebuild the stage a checkpoint was trained as (its class and hyperparameters are in the file)."""
    from lightning_svd.stages import STAGES

    checkpoint = read_checkpoint(path)
    name = checkpoint["hyper_parameters"]["stage"]["name"]
    stage = STAGES[name](**checkpoint["hyper_parameters"])
    stage.load_state_dict(checkpoint["state_dict"])
    stage.on_load_checkpoint(checkpoint)
    return stage.to(map_location)


def _source_key(key: str, source: dict) -> str | None:
    """The key in an earlier stage's weights for this one: the same name, or a LoRA-wrapped layer's base."""
    if key in source:
        return key
    plain = key.replace(".base.", ".")
    return plain if plain in source else None


def is_official_file(path: str | Path) -> bool:
    """A released single file (safetensors) rather than a stage checkpoint (.ckpt or run dir)."""
    return Path(path).expanduser().suffix == ".safetensors"


def official_stage_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The UNet and autoencoder tensors of an official single file, under the names a stage gives them."""
    weights = {}
    for key, tensor in read_state_dict(Path(path).expanduser()).items():
        for prefix, stage_prefixes in OFFICIAL_MODELS.items():
            if key.startswith(prefix):
                weights.update({p + key[len(prefix) :]: tensor for p in stage_prefixes})
    if not weights:
        raise UserError(f"{path} holds neither 'model.diffusion_model.*' nor 'first_stage_model.*' tensors; "
                        "init_from takes a stage checkpoint, a training run dir or an official single file")
    return weights


def stored_motion_buckets(path: str | Path) -> dict | None:
    """The motion-bucket map a stage checkpoint was trained with (None for released weights)."""
    if is_official_file(path):
        return None
    return read_checkpoint(path)["hyper_parameters"].get("motion_buckets")


@torch.no_grad()
def load_init_weights(stage: torch.nn.Module, path: str | Path) -> dict[str, int]:
    """Seed `stage` from another stage's checkpoint or an official single file; returns counts of copied / grown /
    new / dropped tensors."""
    source = official_stage_weights(path) if is_official_file(path) else averaged_state_dict(read_checkpoint(path))
    target = stage.state_dict()
    counts = {"copied": 0, "grown": 0, "new": 0, "dropped": 0}
    used = set()
    for key, tensor in target.items():
        found = _source_key(key, source)
        if found is None:
            counts["new"] += 1
            continue
        value = source[found]
        used.add(found)
        if value.shape == tensor.shape:
            tensor.copy_(value.to(tensor.dtype))
            counts["copied"] += 1
        elif value.ndim == tensor.ndim and all(s <= t for s, t in zip(value.shape, tensor.shape)):
            tensor.zero_()
            tensor[tuple(slice(0, s) for s in value.shape)] = value.to(tensor.dtype)
            counts["grown"] += 1
        else:
            counts["new"] += 1
    counts["dropped"] = len(set(source) - used)
    stage.load_state_dict(target)
    if getattr(stage, "ema", None) is not None:
        stage.ema.reset()
    return counts
