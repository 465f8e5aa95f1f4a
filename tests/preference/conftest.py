"""Shared fixtures: one small synthetic study pack (real H.264 videos) and a helper to open a study on it."""

import shutil
from pathlib import Path

import pytest

from lightning_svd.preference.demo_pack import write_demo_pack
from lightning_svd.preference.pack import StudyPack
from lightning_svd.preference.service import PreferenceStudy
from lightning_svd.preference.settings import StudySettings


@pytest.fixture(scope="session")
def pack_template(tmp_path_factory) -> Path:
    """A 3-prompt, 3-arm demo pack (crisp, wobbly, degraded), written once per test session."""
    root = tmp_path_factory.mktemp("pack_template")
    write_demo_pack(root, num_prompts=3, num_arms=3, num_frames=12, width=96, height=64)
    return root


@pytest.fixture
def pack_dir(pack_template, tmp_path) -> Path:
    """A private, writable copy of the demo pack (votes and attention videos land inside it)."""
    return Path(shutil.copytree(pack_template, tmp_path / "pack"))


@pytest.fixture
def open_study(pack_dir):
    """Open a study on the private pack copy, with settings overridden by keyword."""

    def opener(db_name: str = "votes.sqlite", **settings) -> PreferenceStudy:
        return PreferenceStudy.open(StudyPack.load(pack_dir), pack_dir / db_name, StudySettings(**settings))

    return opener
