"""Read and write weight files in the formats the suite meets: safetensors and torch pickles."""

import hashlib
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A weight file that cannot be read or does not fit the model it is loaded into."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Return the flat tensor dict of a `.safetensors`, `.ckpt`, `.pt` or `.pth` file on the CPU.

    Lightning/ldm checkpoints keep their weights under `state_dict`; that level is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for foreign files
        raise CheckpointError(f"cannot read {path} as a torch checkpoint: {error}") from error
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{path} holds no flat tensor dict (nor one under 'state_dict')")
    return payload


def write_state_dict(state_dict: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write a tensor dict as safetensors (contiguous CPU copies), atomically via a temporary file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(partial))
    partial.replace(path)
    return path


def weights_digest(module: torch.nn.Module) -> str:
    """A short hash of a module's weights (names, dtypes, shapes, values): what was computed with one set of weights
    can be told apart from what another computed, whatever file or random init they came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
