"""Local model folders in the `save_pretrained` layout: checked when the config is read, built on first use.

The checks need no torch or transformers import, so a bad path fails before any video is curated.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
RANDOM_LABEL = "random weights (captions are not meaningful)"


@contextmanager
def seeded_init(seed: int = 0):
    """Build networks inside this with torch's RNG seeded (and restored after): every worker and every rerun draws
    the same random weights, so scores from them agree cell for cell across runs and resumed runs."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class LocalModelFolder:
    """A `save_pretrained` folder named by config key `key`; builds a model class from it, loaded or random."""

    path: str | None
    key: str
    random_weights: bool = False

    def __post_init__(self):
        if not self.path:
            raise ValueError(f"{self.key}: set it to a local model folder (save_pretrained layout) or turn the "
                             "captioner off")
        folder = Path(self.path).expanduser()
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{self.key}: no config.json in {folder}; give a folder written by save_pretrained")
        if not self.random_weights and not any((folder / name).is_file() for name in WEIGHT_FILES):
            raise FileNotFoundError(f"{self.key}: no weights in {folder} (looked for {', '.join(WEIGHT_FILES)}); "
                                    "give a full checkpoint, or set random_weights=true for a labelled pipeline check")

    def build(self, model_class, device: str):
        from transformers import AutoConfig
        from transformers.utils import logging

        logging.disable_progress_bar()
        if self.random_weights:
            config = AutoConfig.from_pretrained(self.path, local_files_only=True)
            with seeded_init():
                model = model_class.from_config(config) if hasattr(model_class, "from_config") else model_class(config)
        else:
            model = model_class.from_pretrained(self.path, local_files_only=True)
        return model.to(device).eval()

    def tokenizer(self, padding_side: str = "right"):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True, padding_side=padding_side)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def describe(self, model_class_name: str, detail: str) -> str:
        weights = RANDOM_LABEL if self.random_weights else f"weights from {self.path}"
        return f"transformers:{model_class_name} {detail}, {weights}"
