"""The multi-view DataModule: orbits of an object (rendered views plus a camera JSON) as clips.

Reads a folder of orbits in the format documented in `lightning_svd/synthetic/orbits.py` (one folder per
object with `cameras.json` listing its views in orbit order). A sample is

    {"video": (T, 3, H, W) in [-1, 1], "image": (3, H, W) (the first view, the conditioning image),
     "azimuth_rad": (T,), "polar_rad": (T,), "clip_id": the object folder's name, "txt": ""}

with T = `num_views` views taken evenly around the orbit starting at its first view (all of them when the
orbit has exactly `num_views`, the paper's 21). `clip_id` and the empty caption `txt` (orbits have none)
are keys every training sample of the suite carries. Views are resized to cover `height` x `width` and
centre-cropped; RGBA renders are composited onto white. Samples are deterministic; the order is one seeded
permutation per epoch shared by the ranks of a DDP run (the clip DataModule's sampler).
"""

import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from data_modules.clips import SeededSampler, resize_and_crop
from lightning_svd.errors import UserError
from lightning_svd.synthetic.orbits import OrbitSpec, ensure_orbits

CAMERA_FILE = "cameras.json"


def read_cameras(folder: Path) -> list[dict]:
    """The views of one orbit folder, checked: each has an existing file and numeric angles (radians)."""
    path = folder / CAMERA_FILE
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); fix or re-export it") from None
    views = data.get("views") if isinstance(data, dict) else None
    if not isinstance(views, list) or not views:
        raise UserError(f'{path} needs a non-empty "views" list of {{"file", "azimuth_rad", "polar_rad"}} entries')
    for index, view in enumerate(views):
        if not isinstance(view, dict):
            raise UserError(f"{path}: views[{index}] must be an object with file, azimuth_rad and polar_rad")
        missing = [k for k in ("file", "azimuth_rad", "polar_rad") if k not in view]
        if missing:
            raise UserError(f"{path}: views[{index}] lacks {missing}; each view needs file, azimuth_rad, polar_rad")
        for key in ("azimuth_rad", "polar_rad"):
            value = view[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise UserError(f"{path}: views[{index}].{key} must be a finite number in radians, got {value!r}")
        if not (folder / str(view["file"])).is_file():
            raise UserError(f"{path}: views[{index}] names {view['file']!r}, which is not in {folder}")
    return views


def orbit_folders(root: str | Path) -> list[Path]:
    """The object folders (those holding cameras.json) under `root`, sorted by name."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"orbit folder {root} not found; set train.data.orbits to a folder of orbit renders")
    folders = sorted(p.parent for p in root.glob(f"*/{CAMERA_FILE}"))
    if not folders:
        raise UserError(f"{root} holds no object folder with a {CAMERA_FILE}; expected <root>/<object>/{CAMERA_FILE}")
    return folders


def view_indices(available: int, wanted: int) -> list[int]:
    """`wanted` views evenly around an orbit of `available` views, starting at the first."""
    return [round(k * available / wanted) % available for k in range(wanted)]


def load_view(path: Path) -> np.ndarray:
    """(h, w, 3) uint8; transparent pixels of RGBA renders become white."""
    with Image.open(path) as image:
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(background, image).convert("RGB"))
        return np.asarray(image.convert("RGB"))


class OrbitDataset(Dataset):
    """Map-style dataset of orbits, indexed like the clip dataset by `(index, sample seed)` pairs."""

    def __init__(self, root: str | Path, num_views: int, height: int, width: int):
        self.num_views, self.height, self.width = num_views, height, width
        self.folders = orbit_folders(root)
        self.cameras = [read_cameras(folder) for folder in self.folders]
        for folder, views in zip(self.folders, self.cameras):
            if len(views) < num_views:
                raise UserError(f"{folder / CAMERA_FILE} lists {len(views)} views but the stage needs {num_views}; "
                                "render more views or lower train.num_frames")

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, key: tuple[int, int] | int) -> dict:
        index = key[0] if isinstance(key, tuple) else key
        folder, views = self.folders[index], self.cameras[index]
        chosen = [views[i] for i in view_indices(len(views), self.num_views)]
        frames = [load_view(folder / str(v["file"])) for v in chosen]
        sizes = {f.shape for f in frames}
        if len(sizes) != 1:
            raise UserError(f"{folder}: views differ in size {sorted(sizes)}; render every view at one size")
        video = resize_and_crop(np.stack(frames), self.height, self.width)
        return {
            "video": video,
            "image": video[0].clone(),
            "azimuth_rad": torch.tensor([float(v["azimuth_rad"]) for v in chosen]),
            "polar_rad": torch.tensor([float(v["polar_rad"]) for v in chosen]),
            "clip_id": folder.name,
            "txt": "",
        }


class MultiviewDataModule(L.LightningDataModule):
    """Orbits from `root` as `num_views`-frame clips at `height` x `width` (see the module docstring)."""

    def __init__(self, root: str | Path, num_views: int, height: int, width: int, batch_size: int = 2,
                 num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.root = root
        self.num_views, self.height, self.width = num_views, height, width
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.dataset: OrbitDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = OrbitDataset(self.root, self.num_views, self.height, self.width)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if len(self.dataset) < world * self.batch_size:
            raise UserError(f"{self.root} has {len(self.dataset)} orbits, fewer than one batch per rank "
                            f"({world} x {self.batch_size}); add orbits or lower train.data.batch_size")
        sampler = SeededSampler(len(self.dataset), self.seed, rank, world, samples_done=self.samples_done)
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          drop_last=True, persistent_workers=self.num_workers > 0)

    def samples_done(self) -> int:
        """This rank's samples the current epoch's optimizer steps consumed (0 unless resumed mid-epoch)."""
        trainer = self.trainer
        if trainer is None:
            return 0
        batches_per_epoch = -(-len(self.dataset) // trainer.world_size) // self.batch_size
        batches = trainer.global_step * trainer.accumulate_grad_batches - trainer.current_epoch * batches_per_epoch
        return max(batches, 0) * self.batch_size


def multiview_datamodule(cfg) -> MultiviewDataModule:
    """The DataModule of a `multiview` experiment: `train.data.orbits`, or the synthetic orbit set (`orbits`)."""
    data = cfg.train.data
    root = data.orbits or ensure_orbits(OrbitSpec.from_config(cfg.orbits), cfg.cache_dir)
    return MultiviewDataModule(root, int(cfg.train.num_frames), int(cfg.train.height), int(cfg.train.width),
                               batch_size=int(data.batch_size), num_workers=int(data.num_workers), seed=int(cfg.seed))
