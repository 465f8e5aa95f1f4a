"""The synthetic orbit set (deterministic, documented folder format) and the multi-view DataModule over it."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from data_modules.multiview import MultiviewDataModule, OrbitDataset, view_indices
from lightning_svd.errors import UserError
from lightning_svd.synthetic.orbits import OrbitSpec, ensure_orbits

SPEC = OrbitSpec(num_objects=3, num_views=6, size=24, seed=3)


@pytest.fixture(scope="module")
def orbits(tmp_path_factory):
    return ensure_orbits(SPEC, tmp_path_factory.mktemp("orbits"))


def all_files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def test_orbit_set_is_deterministic_and_cached(orbits, tmp_path):
    again = ensure_orbits(SPEC, tmp_path)
    assert again.name == orbits.name == SPEC.key()
    assert all_files(again) == all_files(orbits)
    stamp = (again / "manifest.json").stat().st_mtime_ns
    assert ensure_orbits(SPEC, tmp_path) == again and (again / "manifest.json").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("orbits/*.partial-*"))
    other = ensure_orbits(OrbitSpec(num_objects=3, num_views=6, size=24, seed=4), tmp_path)
    assert other != again and all_files(other) != all_files(again)


def test_orbit_folders_follow_the_documented_format(orbits):
    objects = sorted(p for p in orbits.iterdir() if p.is_dir())
    assert [p.name for p in objects] == ["object_000", "object_001", "object_002"]
    for folder in objects:
        cameras = json.loads((folder / "cameras.json").read_text())
        views = cameras["views"]
        assert [v["file"] for v in views] == [f"view_{k:02d}.png" for k in range(6)]
        steps = np.diff(np.unwrap([v["azimuth_rad"] for v in views]))
        assert np.allclose(steps, 2 * math.pi / 6, atol=1e-5)
        polars = {v["polar_rad"] for v in views}
        assert len(polars) == 1
        elevation = math.degrees(math.pi / 2 - polars.pop())
        assert -5.0 <= elevation <= 30.0
        images = [np.asarray(Image.open(folder / v["file"])) for v in views]
        assert all(i.shape == (24, 24, 3) and i.dtype == np.uint8 for i in images)
        assert all((i[0, 0] == 255).all() and (i < 250).any() for i in images), "white background, visible object"
        assert not np.array_equal(images[0], images[3]), "opposite views of an orbit differ"


def test_view_indices_spread_evenly_from_the_first_view():
    assert view_indices(21, 21) == list(range(21))
    assert view_indices(21, 7) == [0, 3, 6, 9, 12, 15, 18]
    assert view_indices(6, 4) == [0, 2, 3, 4]


def test_dataset_samples_are_clips_with_the_first_view_and_per_frame_cameras(orbits):
    dataset = OrbitDataset(orbits, num_views=3, height=16, width=20)
    assert len(dataset) == 3
    sample = dataset[(1, 12345)]
    assert sample["video"].shape == (3, 3, 16, 20) and sample["video"].dtype == torch.float32
    assert sample["video"].min() >= -1 and sample["video"].max() <= 1 and sample["video"].max() == 1
    assert torch.equal(sample["image"], sample["video"][0])
    views = json.loads((orbits / "object_001" / "cameras.json").read_text())["views"]
    chosen = [views[i] for i in (0, 2, 4)]
    assert torch.allclose(sample["azimuth_rad"], torch.tensor([v["azimuth_rad"] for v in chosen]))
    assert torch.allclose(sample["polar_rad"], torch.tensor([v["polar_rad"] for v in chosen]))
    assert sample["clip_id"] == "object_001" and sample["txt"] == ""
    assert torch.equal(dataset[(1, 0)]["video"], sample["video"])


def test_datamodule_batches(orbits):
    module = MultiviewDataModule(orbits, num_views=6, height=16, width=16, batch_size=2, seed=0)
    batch = next(iter(module.train_dataloader()))
    assert batch["video"].shape == (2, 6, 3, 16, 16) and batch["image"].shape == (2, 3, 16, 16)
    assert batch["azimuth_rad"].shape == batch["polar_rad"].shape == (2, 6)
    assert len(batch["clip_id"]) == 2 and len(module.train_dataloader()) == 1


def test_rgba_renders_are_composited_onto_white(tmp_path):
    folder = tmp_path / "orbits" / "mug"
    folder.mkdir(parents=True)
    pixels = np.zeros((8, 8, 4), dtype=np.uint8)
    pixels[2:6, 2:6] = (255, 0, 0, 255)
    views = []
    for k in range(2):
        Image.fromarray(pixels, "RGBA").save(folder / f"v{k}.png")
        views.append({"file": f"v{k}.png", "azimuth_rad": k * math.pi, "polar_rad": 1.5})
    (folder / "cameras.json").write_text(json.dumps({"views": views}))
    video = OrbitDataset(tmp_path / "orbits", num_views=2, height=8, width=8)[0]["video"]
    assert torch.equal(video[0, :, 0, 0], torch.ones(3))
    assert torch.allclose(video[0, :, 4, 4], torch.tensor([1.0, -1.0, -1.0]))


def broken_copy(orbits, tmp_path, edit) -> object:
    root = tmp_path / "broken"
    shutil.copytree(orbits, root)
    path = root / "object_001" / "cameras.json"
    edit(path, json.loads(path.read_text()))
    return root


def rewrite(change):
    def edit(path, cameras):
        change(cameras)
        path.write_text(json.dumps(cameras))
    return edit


@pytest.mark.parametrize(("edit", "message"), [
    (lambda path, _: path.write_text("{views: "), "is not valid JSON"),
    (rewrite(lambda c: c.pop("views")), 'needs a non-empty "views" list'),
    (rewrite(lambda c: c["views"][2].pop("polar_rad")), r"views\[2\] lacks \['polar_rad'\]"),
    (rewrite(lambda c: c["views"][1].update(azimuth_rad="north")), r"views\[1\].azimuth_rad must be a finite number"),
    (rewrite(lambda c: c["views"][0].update(file="missing.png")), "names 'missing.png', which is not in"),
    (rewrite(lambda c: c.update(views=c["views"][:2])), "lists 2 views but the stage needs 4"),
])
def test_malformed_orbit_folders_fail_with_one_clear_line(orbits, tmp_path, edit, message):
    root = broken_copy(orbits, tmp_path, edit)
    with pytest.raises(UserError, match=message) as error:
        OrbitDataset(root, num_views=4, height=16, width=16)
    assert "\n" not in str(error.value) and "object_001" in str(error.value)


def test_a_folder_without_orbits_is_named(tmp_path):
    with pytest.raises(UserError, match="holds no object folder with a cameras.json"):
        OrbitDataset(tmp_path, num_views=4, height=16, width=16)
    with pytest.raises(UserError, match="not found; set train.data.orbits"):
        OrbitDataset(tmp_path / "nowhere", num_views=4, height=16, width=16)
