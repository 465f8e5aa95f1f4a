"""One synthetic scene: a textured background, moving shapes, an optional text overlay and degradation.

Everything a scene shows is known in advance (speed, text area, degradation), so curation and the ablations can
be measured against ground truth. The degradation applies to the footage (background and shapes) and the text is
drawn on top afterwards, crisp, as subtitles and logos are added in post to footage of any quality. A scene
renders any local time `t` (frames since its first content frame), negative and past its end included, so
transitions can blend two scenes that both keep moving.
"""

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLORS = {
    "red": (220, 50, 47), "orange": (240, 140, 30), "yellow": (235, 215, 40), "green": (60, 170, 70),
    "teal": (30, 160, 160), "blue": (40, 90, 210), "purple": (140, 70, 190), "pink": (230, 110, 170),
    "white": (240, 240, 240), "brown": (130, 85, 45),
}
SHAPES = ("circle", "square")
DEGRADATIONS = ("blur", "noise", "low_contrast")
DIRECTIONS = {"right": 0.0, "down-right": 45.0, "down": 90.0, "down-left": 135.0, "left": 180.0,
              "up-left": 225.0, "up": 270.0, "up-right": 315.0}
OVERLAY_TEXTS = ("BREAKING NEWS", "SALE 50% OFF", "SUBSCRIBE NOW", "LIVE 24/7", "WWW.EXAMPLE.COM",
                 "CHAPTER ONE", "FINAL SCORE 3-1", "WEATHER UPDATE")


@dataclass
class Shape:
    kind: str
    color: str
    radius: float
    x: float
    y: float
    direction_deg: float


@dataclass
class Scene:
    """The full description of one scene; `to_truth` gives the part recorded in the ground-truth sidecar."""

    background_color: str
    pattern_seed: int
    shapes: list[Shape]
    speed: float
    pan_direction: str
    text: str | None = None
    text_size: int = 0
    text_lines: int = 0
    degradation: str | None = None
    degradation_level: float = 0.0
    noise_seed: int = 0
    text_area: float = 0.0
    caption: str = ""
    zoom: float = 0.0        # log scale change per frame (> 0 zooms in); a zooming scene does not pan
    zoom_mid: float = 0.0    # the frame (local time) shown at scale 1
    zoom_speed: float = 0.0  # the zoom's mean image motion in px per frame (set by the renderer, which knows the size)

    @property
    def motion(self) -> str:
        """The camera motion: pan, zoom or static (the clip table's `camera_motion` values)."""
        return "zoom" if self.zoom else "static" if self.speed == 0 else "pan"

    def to_truth(self) -> dict:
        """The sidecar's record; a zoom adds `zoom` (in or out) and `zoom_rate`, and its `speed` is the zoom's mean
        image motion (pans and still shots keep the record they had before zooms existed)."""
        truth = {
            "background_color": self.background_color, "shape_kind": self.shapes[0].kind,
            "shape_color": self.shapes[0].color, "num_shapes": len(self.shapes),
            "motion": self.motion, "speed": round(self.speed, 4),
            "direction_deg": DIRECTIONS[self.pan_direction] if self.speed else None,
            "text_area": round(self.text_area, 5), "text": self.text,
            "degradation": self.degradation, "degradation_level": round(self.degradation_level, 4),
            "caption": self.caption,
        }
        if self.zoom:
            truth.update(speed=round(self.zoom_speed, 4), zoom="in" if self.zoom > 0 else "out",
                         zoom_rate=round(self.zoom, 5))
        return truth


def random_scene(rng: np.random.Generator, *, static: bool, text: bool, degraded: bool,
                 degradations: tuple[str, ...] = DEGRADATIONS, zoom: bool = False, frames: int = 0,
                 shape_scale: float = 1.0) -> Scene:
    """Draw a scene's content; `static`, `text`, `degraded` and `zoom` (a moving scene zooms instead of panning) are
    decided by the corpus plan, the kind of degradation among `degradations`. A zoom over `frames` frames changes the
    scale by at most 1.6x either side of its middle, so the texture neither blurs away nor aliases."""
    color_names = list(COLORS)
    background = str(rng.choice(color_names))
    shape_color = str(rng.choice([c for c in color_names if c != background]))
    kind = str(rng.choice(SHAPES))
    count = int(rng.integers(1, 4))
    pan_direction = str(rng.choice(list(DIRECTIONS)))
    shapes = [
        Shape(kind, shape_color, shape_scale * float(rng.uniform(7, 14)), float(rng.uniform(0, 1)),
              float(rng.uniform(0, 1)),
              float(rng.uniform(0, 360)))
        for _ in range(count)
    ]
    scene = Scene(
        background_color=background, pattern_seed=int(rng.integers(2**31)), shapes=shapes,
        speed=0.0 if static else float(rng.uniform(0.4, 3.0)), pan_direction=pan_direction,
        noise_seed=int(rng.integers(2**31)),
    )
    if text:
        scene.text = str(rng.choice(OVERLAY_TEXTS))
        scene.text_size = int(rng.choice([9, 12, 15, 19]))
        scene.text_lines = int(rng.integers(1, 3))
    if degraded:
        scene.degradation = str(rng.choice(list(degradations)))
        scene.degradation_level = float(rng.uniform(0.5, 1.0))
    if zoom and not static:
        rate = min(float(rng.uniform(0.008, 0.016)), 0.92 / max(frames, 1))
        scene.zoom, scene.zoom_mid, scene.speed = rate if rng.random() < 0.5 else -rate, frames / 2, 0.0
    return scene


class SceneRenderer:
    """Renders frames of one scene at a fixed frame size; the text layer and pattern are built once.

    `texture` scales the background's plane waves: 1 is the curation corpus' textured ground (the flow scorer
    needs it to see a pan), 0 a flat colour (small proxy models learn flat scenes in minutes, textured ones not).
    """

    def __init__(self, scene: Scene, width: int, height: int, texture: float = 1.0, noise_grain: int = 1):
        self.scene, self.width, self.height, self.texture = scene, width, height, float(texture)
        self.noise_grain = int(noise_grain)
        self.ys, self.xs = np.mgrid[0:height, 0:width].astype(np.float32)
        rng = np.random.default_rng(scene.pattern_seed)
        # Six plane waves per channel: wavelengths of 12-70 px survive the 16 px downscale of the flow scorer.
        k = rng.uniform(2 * np.pi / 70, 2 * np.pi / 12, size=(3, 6, 1))
        theta = rng.uniform(0, 2 * np.pi, size=(3, 6, 1))
        self.wave_kx, self.wave_ky = k * np.cos(theta), k * np.sin(theta)
        phase = self.wave_kx * self.xs.reshape(1, 1, -1) + self.wave_ky * self.ys.reshape(1, 1, -1)
        phase += rng.uniform(0, 2 * np.pi, size=(3, 6, 1))
        # A shifted plane wave is sin(P - s) = sin P cos s - cos P sin s: two small matrix products per frame.
        self.sin_phase, self.cos_phase = np.sin(phase).astype(np.float32), np.cos(phase).astype(np.float32)
        self.base = np.array(COLORS[scene.background_color], dtype=np.float32)
        if scene.zoom:  # zooms rescale the phase about the frame centre, so they keep it (and where the centre lies)
            self.centre = ((width - 1) / 2, (height - 1) / 2)
            self.phase = phase.astype(np.float32)
            # pixel 0 lies at the origin, so its phase is each wave's offset
            self.centre_phase = (self.wave_kx * self.centre[0] + self.wave_ky * self.centre[1]
                                 + phase[..., :1]).astype(np.float32)
            radius = np.hypot(self.xs - self.centre[0], self.ys - self.centre[1])
            scene.zoom_speed = abs(scene.zoom) * float(radius.mean())
        self.text_outline, self.text_letters, scene.text_area = self._render_text()

    def _render_text(self) -> tuple[np.ndarray | None, np.ndarray | None, float]:
        """Draw the overlay once; its area is the sum of the tight line boxes over the frame area."""
        scene = self.scene
        if not scene.text:
            return None, None, 0.0
        font = ImageFont.load_default(size=scene.text_size)
        layer = Image.new("L", (self.width, self.height), 0)
        draw = ImageDraw.Draw(layer)
        area = 0
        line_height = int(scene.text_size * 1.5)
        top = self.height - 4 - line_height * scene.text_lines
        for line in range(scene.text_lines):
            words = scene.text if line == 0 else scene.text.split()[0]
            x0, y0, x1, y1 = draw.textbbox((0, 0), words, font=font)
            left = max(2, (self.width - (x1 - x0)) // 2) - x0
            y = top + line * line_height - y0
            draw.text((left, y), words, fill=255, font=font)
            box = draw.textbbox((left, y), words, font=font)
            box = (max(box[0], 0), max(box[1], 0), min(box[2], self.width), min(box[3], self.height))
            area += max(0, box[2] - box[0]) * max(0, box[3] - box[1])
        letters = np.asarray(layer) > 90
        # A one-pixel dark outline keeps the white letters legible on any background.
        outline = cv2.dilate(letters.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        return outline, letters, area / (self.width * self.height)

    def render(self, t: float) -> np.ndarray:
        scene = self.scene
        if scene.zoom:
            frame = self._zoomed(float(np.exp(scene.zoom * (t - scene.zoom_mid))))
        else:
            angle = np.deg2rad(DIRECTIONS[scene.pan_direction])
            dx, dy = scene.speed * t * np.cos(angle), scene.speed * t * np.sin(angle)
            frame = self._background(dx, dy)
            for shape in scene.shapes:
                self._draw_shape(frame, shape, t, dx, dy)
        frame = self._degrade(np.clip(frame, 0, 255), t)
        if self.text_outline is not None:
            frame[self.text_outline] = 0.0
            frame[self.text_letters] = 255.0
        return frame.astype(np.uint8)

    def _background(self, dx: float, dy: float) -> np.ndarray:
        shift = (self.wave_kx * dx + self.wave_ky * dy)[..., 0].astype(np.float32)
        texture = np.einsum("cw,cwp->cp", np.cos(shift), self.sin_phase) - np.einsum(
            "cw,cwp->cp", np.sin(shift), self.cos_phase)
        texture = texture.T.reshape(self.height, self.width, 3) / self.sin_phase.shape[1]
        return self.base * 0.6 + 70.0 * self.texture * texture + 40.0

    def _zoomed(self, scale: float) -> np.ndarray:
        """Background and shapes magnified `scale` times about the frame centre (the shapes hold still in the scene):
        the pixel at x shows what lies at centre + (x - centre) / scale."""
        phase = self.phase / scale + self.centre_phase * (1 - 1 / scale)
        texture = np.sin(phase).mean(axis=1).T.reshape(self.height, self.width, 3)
        frame = self.base * 0.6 + 70.0 * self.texture * texture + 40.0
        cx, cy = self.centre
        for shape in self.scene.shapes:
            x = cx + scale * (shape.x * self.width - cx)
            y = cy + scale * (shape.y * self.height - cy)
            ddx, ddy, radius = np.abs(self.xs - x), np.abs(self.ys - y), shape.radius * scale
            inside = (ddx**2 + ddy**2 <= radius**2) if shape.kind == "circle" else ((ddx <= radius) & (ddy <= radius))
            frame[inside] = COLORS[shape.color]
        return frame

    def _draw_shape(self, frame: np.ndarray, shape: Shape, t: float, dx: float, dy: float) -> None:
        """Shapes ride on the panning background and also move on their own at the scene's speed."""
        own = np.deg2rad(shape.direction_deg)
        cx = (shape.x * self.width + dx + self.scene.speed * t * np.cos(own)) % self.width
        cy = (shape.y * self.height + dy + self.scene.speed * t * np.sin(own)) % self.height
        # Distances on the torus so shapes wrap around the frame edges without popping.
        ddx = np.abs(self.xs - cx)
        ddx = np.minimum(ddx, self.width - ddx)
        ddy = np.abs(self.ys - cy)
        ddy = np.minimum(ddy, self.height - ddy)
        inside = (ddx**2 + ddy**2 <= shape.radius**2) if shape.kind == "circle" else (
            (ddx <= shape.radius) & (ddy <= shape.radius))
        frame[inside] = COLORS[shape.color]

    def _degrade(self, frame: np.ndarray, t: float) -> np.ndarray:
        scene = self.scene
        level = scene.degradation_level
        if scene.degradation == "blur":
            return cv2.GaussianBlur(frame, (0, 0), sigmaX=1.0 + 2.5 * level)
        if scene.degradation == "noise":
            rng = np.random.default_rng([scene.noise_seed, int(round(t)) % 100000])
            grain = self.noise_grain
            cells = rng.normal(0, 10 + 30 * level, (-(-frame.shape[0] // grain), -(-frame.shape[1] // grain), 3))
            noise = np.repeat(np.repeat(cells, grain, axis=0), grain, axis=1)[: frame.shape[0], : frame.shape[1]]
            return np.clip(frame + noise, 0, 255)
        if scene.degradation == "low_contrast":
            gain = 0.6 - 0.4 * level
            return frame.mean(axis=(0, 1), keepdims=True) * (1 - gain) + frame * gain
        return frame


def caption_for(scene: Scene, *, textured: bool = True, name_degradation: bool = False) -> str:
    """A template caption that states what the scene shows (the synthetic corpus' ground-truth caption), the
    background first: "a teal textured background behind three yellow circles moving ...".

    The background comes first because the tiny profile's random-weight text tower marks a colour word by its
    position more than by its neighbours: named last, after a phrase of varying length, an attention probe on its
    features names the background colour of unseen captions in 56 %, named first in 100 %
    (benchmarks/text_tower_probe.py). Real captioners rarely describe blur or grain, so the degradation is named
    only with `name_degradation`: a caption naming it lets a text-conditioned model tie the degradation to those
    words and never draw it for a clean prompt, hiding the very effect the curation ablations measure."""
    shapes = scene.shapes
    noun = shapes[0].kind + ("s" if len(shapes) > 1 else "")
    count = {1: "a", 2: "two", 3: "three"}[len(shapes)]
    what = f"{count} {shapes[0].color} {noun}"
    if scene.zoom:
        motion = f"as the camera zooms {'in' if scene.zoom > 0 else 'out'}"
    elif scene.speed == 0:
        motion = "standing still"
    else:
        pace = "slowly" if scene.speed < 1.0 else ("steadily" if scene.speed < 2.0 else "quickly")
        motion = f"moving {pace} as the camera pans {scene.pan_direction}"
    quality = {None: "", "blur": "a blurry shot of ", "noise": "a grainy shot of ",
               "low_contrast": "a washed-out shot of "}[scene.degradation] if name_degradation else ""
    text = f", with the words '{scene.text}' on screen" if scene.text else ""
    article = "an" if scene.background_color[0] in "aeiou" else "a"
    background = f"{article} {scene.background_color} {'textured ' if textured else ''}background"
    return f"{quality}{background} behind {what} {motion}{text}"
