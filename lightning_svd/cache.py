"""Build a cached artefact once, atomically, in a folder named by its key.

A half-written cache entry would be taken for a whole one by the next run, so `build_once` builds into a temporary
sibling folder and renames it into place: a reader finds either nothing or the complete folder, an interrupted build
leaves nothing behind, and of two concurrent builds the first rename wins and the other's result is dropped.
"""

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path


def build_once(folder: str | Path, key: str, build: Callable[[Path], None]) -> Path:
    """Return `folder / key`, first calling `build(tmp)` to fill a temporary folder renamed to it if it is absent."""
    if not key or Path(key).name != key or key.startswith("."):
        raise ValueError(f"a cache key must be a plain folder name, got {key!r}")
    final = Path(folder).expanduser() / key
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{key}.partial-{os.getpid()}-{time.time_ns()}")
    partial.mkdir()
    try:
        build(partial)
        try:
            partial.rename(final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def build_once_resuming(folder: str | Path, key: str, build: Callable[[Path], None]) -> Path:
    """`build_once` for builds of minutes that can resume (a training, a curation): `build(work)` fills a work folder
    of fixed name, `folder/.<key>.work`, which an interrupted build leaves for the next call to resume in; once it
    returns, the work's contents move into the folder `build_once` publishes. Paths the build records inside the
    work folder do not survive the move: read outputs relative to the returned folder."""
    work = Path(folder).expanduser() / f".{key}.work"

    def resume_then_move(partial: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        build(work)
        for child in work.iterdir():
            child.rename(partial / child.name)
        work.rmdir()

    return build_once(folder, key, resume_then_move)
