"""Stage checkpoints: find them (a .ckpt file or a run dir), rebuild a stage, and seed a new stage from one.

Chaining stages changes shapes: image -> video adds temporal layers, text -> image-to-video widens the UNet
input (noisy + conditioning latent) and the vector conditioning. `load_init_weights` copies every tensor
that fits, copies the overlapping block of a tensor that grew (new input channels and vector columns start at
zero, so the new conditioning starts switched off) and leaves new layers as initialised. The earlier stage's
EMA weights are used where it kept them.

A stage can also start from released weights, told apart from a stage checkpoint by their keys: an official
single file (sgm `.safetensors`, e.g. the SVD release) or an SD 2.1 ldm checkpoint (`.ckpt`, or the same as
`.safetensors`) seeds its UNet from `model.diffusion_model.*` and its autoencoder from `first_stage_model.*`; a
diffusers folder (a pipeline with `unet/` and `vae/`, or one model's folder) seeds them the same way. Text
towers are not taken from released weights: `train.open_clip.weights` loads them.
"""

import json
import zipfile
from pathlib import Path

import torch

from lightning_svd.errors import UserError
from lightning_svd.models.autoencoder_checkpoints import DIFFUSERS_CLASSES as DIFFUSERS_AUTOENCODERS
from lightning_svd.models.autoencoder_checkpoints import read_autoencoder_weights
from lightning_svd.models.state_dict_io import CheckpointError, read_state_dict
from lightning_svd.models.unet_checkpoints import read_diffusers_unet
from lightning_svd.models.unet_diffusers import IMAGE_CLASS, VIDEO_CLASS

# Released names -> the names a stage gives the same module (the UNet is also reachable as denoiser.network).
RELEASED_UNET = "model.diffusion_model."
RELEASED_MODELS = {RELEASED_UNET: ("unet.", "denoiser.network."), "first_stage_model.": ("autoencoder.",)}
INIT_SOURCES = ("init_from takes a stage's .ckpt or run dir, released weights (an SD 2.1 ldm .ckpt/.safetensors or "
                "an official SVD .safetensors) or a diffusers folder")


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


def check_resumable(path: Path) -> Path:
    """`path` (a run's last.ckpt) if it is whole. torch writes checkpoints as zip archives, whose index comes last, so
    an empty or cut-short file (a full disk, a copy that stopped) is told in one line before Lightning fails on it."""
    size = path.stat().st_size
    if size and zipfile.is_zipfile(path):
        return path
    others = sorted((p for p in path.parent.glob("*.ckpt") if p != path), key=lambda p: p.stat().st_mtime,
                    reverse=True)
    earlier = f"copy an earlier one ({', '.join(p.name for p in others)}) over it to resume from there, or " \
        if others else ""
    state = "empty" if not size else f"cut short ({size} bytes, not a whole checkpoint)"
    raise UserError(f"cannot resume: {path} is {state}; {earlier}delete it (or set resume=false) to start over")


def read_checkpoint(path: str | Path) -> dict:
    """A torch checkpoint with a `state_dict` (a stage's, or an ldm one), as saved."""
    resolved = resolve_checkpoint(path)
    try:
        checkpoint = torch.load(resolved, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several unrelated types for foreign files
        reason = f"{type(error).__name__}: {next(iter(str(error).splitlines()), '')}"
        raise UserError(f"cannot read {resolved} as a torch checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{resolved} holds no 'state_dict': expected a stage checkpoint or an ldm checkpoint")
    return checkpoint


def is_stage_checkpoint(checkpoint: dict) -> bool:
    """Saved by a stage (its class and settings are in the file), not released weights."""
    return "stage" in checkpoint.get("hyper_parameters", {})


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
    if not is_stage_checkpoint(checkpoint):
        raise UserError(f"{resolve_checkpoint(path)} is not a stage checkpoint (it names no stage); released weights "
                        "such as SD 2.1 seed a stage through init_from=, and that stage's run is what loads here")
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


def released_stage_weights(tensors: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """The UNet and autoencoder tensors of released weights (sgm/ldm names), under the names a stage gives them."""
    weights = {}
    for key, tensor in tensors.items():
        for prefix, stage_prefixes in RELEASED_MODELS.items():
            if key.startswith(prefix):
                weights.update({p + key[len(prefix) :]: tensor for p in stage_prefixes})
    if not weights:
        raise UserError(f"{source} holds neither 'model.diffusion_model.*' nor 'first_stage_model.*' tensors (nor is "
                        f"it a stage checkpoint); {INIT_SOURCES}")
    return weights


def released_unet_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A stage checkpoint's UNet (its EMA where kept) under the released names (`model.diffusion_model.*`): what
    `released_stage_weights` reads back, so any stage of the same UNet can start from it through init_from."""
    return {RELEASED_UNET + key.removeprefix("unet."): tensor.contiguous()
            for key, tensor in averaged_state_dict(read_checkpoint(path)).items() if key.startswith("unet.")}


def diffusers_models(folder: Path) -> dict[str, Path]:
    """The UNet and autoencoder folders of a diffusers pipeline (`unet/`, `vae/`) or of one model's folder, by the
    class each config.json names."""
    found = {}
    for candidate in (folder, folder / "unet", folder / "vae"):
        config = candidate / "config.json"
        if not config.is_file():
            continue
        try:
            class_name = json.loads(config.read_text()).get("_class_name")
        except (json.JSONDecodeError, AttributeError) as error:
            raise UserError(f"{config} is not a diffusers config ({error})") from None
        if class_name in (IMAGE_CLASS, VIDEO_CLASS):
            found.setdefault("unet", candidate)
        elif class_name in DIFFUSERS_AUTOENCODERS:
            found.setdefault("autoencoder", candidate)
    return found


def diffusers_stage_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The UNet and autoencoder of a diffusers folder, renamed to the released names, then to the stage's."""
    models = diffusers_models(folder)
    if not models:
        raise UserError(f"{folder} is neither a run dir (no checkpoints/last.ckpt) nor a diffusers folder (no "
                        f"config.json of a UNet or autoencoder in it, unet/ or vae/); {INIT_SOURCES}")
    tensors = {}
    if "unet" in models:
        tensors.update({"model.diffusion_model." + k: v for k, v in read_diffusers_unet(models["unet"])[1].items()})
    if "autoencoder" in models:
        released = read_autoencoder_weights(models["autoencoder"])[0]
        tensors.update({"first_stage_model." + k: v for k, v in released.items()})
    return released_stage_weights(tensors, folder)


def is_run_dir(path: Path) -> bool:
    return (path / "checkpoints" / "last.ckpt").is_file()


def init_source_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """What `init_from` names, under the stage's names: a stage's weights (its EMA where kept), or the UNet and
    autoencoder of released weights, whose layout is told from the file's keys (or the folder's configs)."""
    path = Path(path).expanduser()
    try:
        if path.is_dir() and not is_run_dir(path):
            return diffusers_stage_weights(path)
        if path.suffix == ".safetensors":
            return released_stage_weights(read_state_dict(path), path)
        checkpoint = read_checkpoint(path)
        if is_stage_checkpoint(checkpoint):
            return averaged_state_dict(checkpoint)
        return released_stage_weights(checkpoint["state_dict"], resolve_checkpoint(path))
    except CheckpointError as error:
        raise UserError(f"init_from {path}: {' '.join(str(error).split())}") from None


def stored_motion_buckets(path: str | Path) -> dict | None:
    """The motion-bucket map a stage checkpoint was trained with (None for released weights)."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors" or (path.is_dir() and not is_run_dir(path)):
        return None
    checkpoint = read_checkpoint(path)
    return checkpoint["hyper_parameters"].get("motion_buckets") if is_stage_checkpoint(checkpoint) else None


@torch.no_grad()
def load_init_weights(stage: torch.nn.Module, path: str | Path) -> dict[str, int]:
    """Seed `stage` from another stage's checkpoint or released weights (`init_source_weights`); returns counts of
    copied / grown / new / dropped tensors."""
    source = init_source_weights(path)
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
