"""The study pack: manifest.json (prompts, arms, one video per arm and prompt) and the videos beside it.

A video entry may name the `seed` and `sample` it was generated with, so a rater or an outside check knows which
measured sample each video is (an ablation gives every (prompt, seed, sample) its own prompt id, e.g. `p003-s1-k2`).

The pack is the contract with the sample-collection callback. Loading checks it completely, so a broken pack
fails at start-up with a message naming the entry, not halfway through a rater's session.

A pack may come from someone else, so no file of it is trusted to stay where it was: a link leaving the pack
refuses the pack at start, and every file is checked again when it is served (`open_inside`).
"""

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

from lightning_svd.errors import UserError
from lightning_svd.preference.problems import NotFound

ATTENTION_PREFIX = "degraded:"
MAX_NAME_LENGTH = 200
VIDEO_META_KEYS = ("seed", "sample")


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str


@dataclass(frozen=True)
class PackVideo:
    arm: str
    prompt_id: str
    relative_path: str
    path: Path
    seed: int | None = None
    sample: int | None = None


def resolve_inside(root: Path, relative_path: str) -> Path:
    """The file `relative_path` names under `root`, refusing anything (`..`, absolute, symlink) that leaves it."""
    if not isinstance(relative_path, str) or not relative_path or "\x00" in relative_path:
        raise UserError(f"video path {relative_path!r} in {root / 'manifest.json'} must be a non-empty string")
    candidate = Path(relative_path)
    if candidate.is_absolute():
        raise UserError(f"video path {relative_path!r} must be relative to the pack folder {root}")
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise UserError(f"video path {relative_path!r} points outside the pack folder {root}")
    if not resolved.is_file():
        raise UserError(f"video {relative_path!r} listed in {root / 'manifest.json'} does not exist")
    return resolved


def refuse_escaping_links(root: Path) -> None:
    """Refuse a pack holding a symbolic link (file or folder, served or not) that leads outside it."""
    for folder, folders, files in os.walk(root):
        for name in (*folders, *files):
            path = Path(folder, name)
            if not path.is_symlink():
                continue
            try:
                target = path.resolve(strict=False)
            except (OSError, RuntimeError):
                target = None
            if target is None or not target.is_relative_to(root):
                raise UserError(f"study pack {root}: {path.relative_to(root)} is a link to "
                                f"{os.readlink(path)}, outside the pack; copy the file in or remove the link")


def open_inside(root: Path, path: Path):
    """Open a pack file to serve it, checked now and not only at start (it may have been swapped for a link).

    The path must resolve to itself inside `root`, the last part may not be a link (O_NOFOLLOW), and after
    opening, the open file must still be the one at that path: a folder swapped for a link between the check and
    the open is caught too. Returns (binary file, its stat); NotFound otherwise.
    """
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise NotFound("no such video")
    try:
        handle = os.fdopen(os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb")
    except OSError:
        raise NotFound("no such video") from None
    opened = os.fstat(handle.fileno())
    try:
        same = resolved.resolve() == resolved and os.path.samestat(opened, os.stat(resolved))
    except OSError:
        same = False
    if not (same and stat.S_ISREG(opened.st_mode)):
        handle.close()
        raise NotFound("no such video")
    return handle, opened


def _video_meta(entry: Mapping, where: str) -> dict[str, int]:
    """The optional `seed` and `sample` of a video entry, integers >= 0 where present (numpy ones made plain)."""
    meta = {}
    for key in VIDEO_META_KEYS:
        if key in entry:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
                raise UserError(f"{where}: {key} {value!r} must be an integer >= 0")
            meta[key] = int(value)
    return meta


def _check_name(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH or not value.isprintable():
        raise UserError(f"{what} {value!r} in manifest.json must be a printable string of 1 to {MAX_NAME_LENGTH} "
                        "characters")
    return value


@dataclass(frozen=True)
class StudyPack:
    """A validated study pack: every arm has exactly one video for every prompt, all inside `root`."""

    root: Path
    prompts: tuple[Prompt, ...]
    arms: tuple[str, ...]
    videos: dict[tuple[str, str], PackVideo]

    @classmethod
    def load(cls, root) -> "StudyPack":
        if root is None or str(root) == "":
            raise UserError("no study pack given: pass study.pack=DIR (a folder with manifest.json and videos; "
                            "`python -m lightning_svd.preference.demo_pack DIR` writes a demo one)")
        root = Path(root).expanduser().resolve()
        manifest_path = root / "manifest.json"
        if not manifest_path.is_file():
            raise UserError(f"study pack {root} has no manifest.json; set study.pack to a folder that has one")
        refuse_escaping_links(root)
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise UserError(f"{manifest_path} is not readable JSON: {error}") from error
        if not isinstance(manifest, dict) or not {"prompts", "arms", "videos"} <= manifest.keys():
            raise UserError(f"{manifest_path} must be an object with the keys prompts, arms and videos")
        prompts = cls._prompts(manifest["prompts"], manifest_path)
        arms = cls._arms(manifest["arms"], manifest_path)
        videos = cls._videos(manifest["videos"], root, {p.id for p in prompts}, set(arms), manifest_path)
        for arm in arms:
            for prompt in prompts:
                if (arm, prompt.id) not in videos:
                    raise UserError(f"{manifest_path} has no video for arm {arm!r} on prompt {prompt.id!r}: "
                                    "every arm needs one video per prompt")
        return cls(root=root, prompts=prompts, arms=arms, videos=videos)

    @staticmethod
    def _prompts(entries, manifest_path: Path) -> tuple[Prompt, ...]:
        if not isinstance(entries, list) or not entries:
            raise UserError(f"{manifest_path}: prompts must be a non-empty list of {{\"id\", \"text\"}} objects")
        prompts = []
        for entry in entries:
            if not isinstance(entry, dict) or not {"id", "text"} <= entry.keys():
                raise UserError(f"{manifest_path}: prompt entry {entry!r} needs an id and a text")
            prompts.append(Prompt(_check_name(entry["id"], "prompt id"), _check_text(entry["text"], entry["id"])))
        ids = [p.id for p in prompts]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise UserError(f"{manifest_path}: prompt ids must be unique, repeated: {duplicates}")
        return tuple(prompts)

    @staticmethod
    def _arms(entries, manifest_path: Path) -> tuple[str, ...]:
        if not isinstance(entries, list) or len(entries) < 2:
            raise UserError(f"{manifest_path}: arms must be a list of at least two names to compare")
        arms = tuple(_check_name(arm, "arm") for arm in entries)
        if len(set(arms)) != len(arms):
            raise UserError(f"{manifest_path}: arm names must be unique, got {list(arms)}")
        reserved = [arm for arm in arms if arm.startswith(ATTENTION_PREFIX)]
        if reserved:
            raise UserError(f"{manifest_path}: arm names may not start with {ATTENTION_PREFIX!r} (reserved for "
                            f"attention checks): {reserved}")
        return arms

    @staticmethod
    def _videos(entries, root: Path, prompt_ids: set[str], arms: set[str],
                manifest_path: Path) -> dict[tuple[str, str], PackVideo]:
        if not isinstance(entries, list):
            raise UserError(f"{manifest_path}: videos must be a list of {{\"arm\", \"prompt_id\", \"path\"}}")
        videos = {}
        for entry in entries:
            if not isinstance(entry, dict) or not {"arm", "prompt_id", "path"} <= entry.keys():
                raise UserError(f"{manifest_path}: video entry {entry!r} needs arm, prompt_id and path")
            arm, prompt_id = entry["arm"], entry["prompt_id"]
            if arm not in arms:
                raise UserError(f"{manifest_path}: video {entry['path']!r} has arm {arm!r}, not one of {sorted(arms)}")
            if prompt_id not in prompt_ids:
                raise UserError(f"{manifest_path}: video {entry['path']!r} has unknown prompt_id {prompt_id!r}")
            if (arm, prompt_id) in videos:
                raise UserError(f"{manifest_path}: two videos for arm {arm!r} on prompt {prompt_id!r}")
            path = resolve_inside(root, entry["path"])
            if path.suffix.lower() != ".mp4":
                raise UserError(f"{manifest_path}: video {entry['path']!r} must be an H.264 .mp4 file")
            _check_h264(path, entry["path"])
            videos[(arm, prompt_id)] = PackVideo(arm, prompt_id, entry["path"], path,
                                                 **_video_meta(entry, f"{manifest_path}: video {entry['path']!r}"))
        return videos

    def prompt_text(self, prompt_id: str) -> str:
        return next(p.text for p in self.prompts if p.id == prompt_id)


def _check_h264(path: Path, listed: str) -> None:
    """Browsers play H.264 in MP4 everywhere; other codecs would fail on the raters' screens, so fail here."""
    import av

    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            codec = streams[0].codec_context.name if streams else None
    except (av.FFmpegError, OSError) as error:
        raise UserError(f"video {listed!r} of the study pack is not a readable MP4 ({error})") from None
    if codec != "h264":
        raise UserError(f"video {listed!r} of the study pack is {codec or 'without a video stream'}, not H.264; "
                        "re-encode it, e.g. ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p -movflags +faststart OUT")


def _check_text(value, prompt_id) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"prompt {prompt_id!r} in manifest.json needs a non-empty text")
    return value


def write_pack(root, prompts: list[dict], videos: dict[tuple[str, str], "object"], fps: int, arms=None,
               video_meta: Mapping[tuple[str, str], Mapping[str, int]] | None = None) -> Path:
    """Write a study pack: `videos[(arm, prompt_id)]` are (T, H, W, 3) uint8 frames; returns the pack folder.

    `video_meta[(arm, prompt_id)]` optionally gives a video's {"seed": int, "sample": int} for its manifest entry.
    File names are by position (`a00_p003.mp4`), the manifest maps them to arms; the app never shows either.
    The manifest is written last, so a folder with a manifest is a complete pack.
    """
    from lightning_svd.video import write_video

    root = Path(root)
    checked = {}
    for key, meta in (video_meta or {}).items():
        if key not in videos or set(meta) - set(VIDEO_META_KEYS):
            raise UserError(f"video_meta for {key} must belong to a video and hold only {VIDEO_META_KEYS}, "
                            f"got {dict(meta)}")
        checked[key] = _video_meta(meta, f"video_meta for {key}")
    (root / "videos").mkdir(parents=True, exist_ok=True)
    arms = list(arms or dict.fromkeys(arm for arm, _ in videos))
    entries = []
    for a, arm in enumerate(arms):
        for p, prompt in enumerate(prompts):
            relative = f"videos/a{a:02d}_p{p:03d}.mp4"
            write_video(root / relative, videos[(arm, prompt["id"])], fps)
            entries.append({"arm": arm, "prompt_id": prompt["id"], "path": relative,
                            **checked.get((arm, prompt["id"]), {})})
    manifest = {"prompts": [{"id": p["id"], "text": p["text"]} for p in prompts], "arms": arms, "videos": entries}
    partial = root / ".manifest.json.partial"
    partial.write_text(json.dumps(manifest, indent=1))
    partial.replace(root / "manifest.json")
    StudyPack.load(root)
    return root
