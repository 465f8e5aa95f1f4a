"""The deterministic synthetic orbit set: the multi-view stage's tiny-profile data and its tests' orbits.

Each object is a few coloured spheres and boxes, ray-cast with numpy (Lambert shading under one fixed world
light, white background) from `num_views` azimuths evenly spaced over 360 degrees, starting at a random
azimuth, at one elevation per object drawn in the paper's range [-5, 30] degrees (SVD-MV, paper D.6).

Orbit folder format (also the format for real orbit renders, e.g. Objaverse or GSO objects):

    <root>/
      <object_id>/                 one folder per object (any name; folders without cameras.json are ignored)
        view_00.png ... view_20.png  the views in orbit order (RGB, or RGBA composited onto white)
        cameras.json               {"views": [{"file": "view_00.png", "azimuth_rad": 0.0, "polar_rad": 1.4}, ...]}

`azimuth_rad` is the camera's angle around the vertical axis and `polar_rad` its angle from the up axis
(pi/2 - elevation), both in radians. The first listed view is the conditioning image; azimuths may be absolute
(the model sees them relative to the first view). Extra keys in cameras.json are kept but not read.

The set is cached under `<cache_dir>/orbits/<spec hash>/` and generated once, atomically (written to a
partial folder, then renamed).
"""

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError

GENERATOR_VERSION = 1
CAMERA_DISTANCE = 3.8
FIELD_OF_VIEW_DEG = 40.0
LIGHT_DIRECTION = np.array([0.5, 0.8, 0.3]) / np.linalg.norm([0.5, 0.8, 0.3])
AMBIENT = 0.35
WHITE = 255


@dataclass(frozen=True)
class OrbitSpec:
    """What to generate; its hash names the cache folder, so any change makes a new orbit set."""

    num_objects: int = 12
    num_views: int = 21
    size: int = 64
    seed: int = 0
    min_elevation_deg: float = -5.0
    max_elevation_deg: float = 30.0
    max_parts: int = 4

    @classmethod
    def from_config(cls, node) -> "OrbitSpec":
        """Build from a config mapping, ignoring keys that are not spec fields."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(node).items() if k in names})

    def validate(self) -> None:
        if self.num_objects < 1 or self.num_views < 2:
            raise UserError(f"orbits.num_objects must be >= 1 and orbits.num_views >= 2, got "
                            f"{self.num_objects} and {self.num_views}")
        if self.size < 16:
            raise UserError(f"orbits.size must be at least 16 pixels, got {self.size}")
        if not -90.0 < self.min_elevation_deg <= self.max_elevation_deg < 90.0:
            raise UserError("orbits.min_elevation_deg must be <= orbits.max_elevation_deg, both inside (-90, 90)")
        if self.max_parts < 1:
            raise UserError(f"orbits.max_parts must be at least 1, got {self.max_parts}")

    def key(self) -> str:
        payload = json.dumps({"generator_version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Part:
    """A sphere (radius = half_size) or a box (half extents, turned by `yaw` about the vertical axis)."""

    kind: str
    centre: tuple[float, float, float]
    half_size: tuple[float, float, float]
    yaw: float
    colour: tuple[int, int, int]


def random_object(rng: np.random.Generator, max_parts: int) -> list[Part]:
    """One to `max_parts` parts around the origin, inside the unit ball so every view frames them."""
    parts = []
    for _ in range(int(rng.integers(1, max_parts + 1))):
        kind = "sphere" if rng.random() < 0.5 else "box"
        centre = tuple(float(v) for v in rng.uniform(-0.45, 0.45, size=3))
        if kind == "sphere":
            radius = float(rng.uniform(0.2, 0.45))
            half = (radius, radius, radius)
        else:
            half = tuple(float(v) for v in rng.uniform(0.15, 0.4, size=3))
        colour = tuple(int(v) for v in rng.integers(20, 220, size=3))
        parts.append(Part(kind, centre, half, float(rng.uniform(0, math.pi)), colour))
    return parts


def camera_rays(azimuth: float, polar: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The camera's position and its (size, size, 3) unit pixel rays, looking at the origin with y up."""
    origin = CAMERA_DISTANCE * np.array(
        [math.sin(polar) * math.cos(azimuth), math.cos(polar), math.sin(polar) * math.sin(azimuth)]
    )
    forward = -origin / np.linalg.norm(origin)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    extent = math.tan(math.radians(FIELD_OF_VIEW_DEG) / 2)
    coords = (np.arange(size) + 0.5) / size * 2 - 1
    u, v = np.meshgrid(coords * extent, -coords * extent)
    rays = forward + u[..., None] * right + v[..., None] * up
    return origin, rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def hit_sphere(origin: np.ndarray, rays: np.ndarray, part: Part) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the first hit (inf where missed) and the surface normal there."""
    offset = origin - np.array(part.centre)
    b = rays @ offset
    c = offset @ offset - part.half_size[0] ** 2
    discriminant = b * b - c
    t = np.where(discriminant > 0, -b - np.sqrt(np.maximum(discriminant, 0)), np.inf)
    t = np.where(t > 0, t, np.inf)
    normals = origin + rays * np.where(np.isfinite(t), t, 0)[..., None] - np.array(part.centre)
    return t, normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-9)


def hit_box(origin: np.ndarray, rays: np.ndarray, part: Part) -> tuple[np.ndarray, np.ndarray]:
    """Slab test in the box's own frame (turned by its yaw); normals are turned back to the world."""
    cos, sin = math.cos(part.yaw), math.sin(part.yaw)
    to_local = np.array([[cos, 0.0, -sin], [0.0, 1.0, 0.0], [sin, 0.0, cos]])
    local_origin = to_local @ (origin - np.array(part.centre))
    local_rays = rays @ to_local.T
    half = np.array(part.half_size)
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / local_rays
        near = np.minimum((-half - local_origin) * inverse, (half - local_origin) * inverse)
        far = np.maximum((-half - local_origin) * inverse, (half - local_origin) * inverse)
    entry, exit_ = near.max(axis=-1), far.min(axis=-1)
    t = np.where((entry <= exit_) & (entry > 0), entry, np.inf)
    axis = near.argmax(axis=-1)
    local_normals = np.zeros_like(rays)
    np.put_along_axis(local_normals, axis[..., None], -np.sign(np.take_along_axis(local_rays, axis[..., None], -1)), -1)
    return t, local_normals @ to_local


def render_view(parts: list[Part], azimuth: float, polar: float, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the nearest part's Lambert-shaded colour per pixel on white."""
    origin, rays = camera_rays(azimuth, polar, size)
    image = np.full((size, size, 3), float(WHITE))
    nearest = np.full((size, size), np.inf)
    for part in parts:
        t, normals = (hit_sphere if part.kind == "sphere" else hit_box)(origin, rays, part)
        closer = t < nearest
        shade = AMBIENT + (1 - AMBIENT) * np.clip(normals @ LIGHT_DIRECTION, 0, 1)
        image = np.where(closer[..., None], shade[..., None] * np.array(part.colour, dtype=float), image)
        nearest = np.minimum(nearest, t)
    return image.round().clip(0, 255).astype(np.uint8)


def orbit_cameras(spec: OrbitSpec, rng: np.random.Generator) -> list[tuple[float, float]]:
    """(azimuth_rad, polar_rad) per view: even azimuth steps from a random start, one elevation."""
    start = float(rng.uniform(0, 2 * math.pi))
    elevation = math.radians(float(rng.uniform(spec.min_elevation_deg, spec.max_elevation_deg)))
    step = 2 * math.pi / spec.num_views
    return [((start + k * step) % (2 * math.pi), math.pi / 2 - elevation) for k in range(spec.num_views)]


def render_orbit(spec: OrbitSpec, index: int, out_dir: Path) -> dict:
    """Render object `index` into `out_dir` (views and cameras.json); returns the cameras.json content."""
    rng = np.random.default_rng([spec.seed, index])
    parts = random_object(rng, spec.max_parts)
    out_dir.mkdir(parents=True)
    views = []
    for k, (azimuth, polar) in enumerate(orbit_cameras(spec, rng)):
        name = f"view_{k:02d}.png"
        Image.fromarray(render_view(parts, azimuth, polar, spec.size)).save(out_dir / name)
        views.append({"file": name, "azimuth_rad": round(azimuth, 6), "polar_rad": round(polar, 6)})
    cameras = {"views": views, "object": out_dir.name, "parts": [asdict(p) for p in parts]}
    (out_dir / "cameras.json").write_text(json.dumps(cameras, indent=1))
    return cameras


def ensure_orbits(spec: OrbitSpec, cache_dir: str | Path) -> Path:
    """Return the orbit-set folder for `spec` (see the module docstring), generating it if not cached yet."""
    spec.validate()
    root = Path(cache_dir).expanduser() / "orbits" / spec.key()
    if (root / "manifest.json").is_file():
        return root
    partial = root.with_name(f"{root.name}.partial-{time.time_ns()}")
    partial.mkdir(parents=True)
    started = time.perf_counter()
    try:
        names = [f"object_{i:03d}" for i in range(spec.num_objects)]
        for i, name in enumerate(names):
            render_orbit(spec, i, partial / name)
        manifest = {"generator_version": GENERATOR_VERSION, "spec": asdict(spec), "key": spec.key(),
                    "objects": names, "seconds_to_generate": round(time.perf_counter() - started, 2)}
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            partial.rename(root)
        except OSError:
            if not (root / "manifest.json").is_file():
                raise
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return root
