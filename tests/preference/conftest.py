"""Shared fixtures: one small synthetic study pack (real H.264 videos), a helper to open a study on it, and
Authorization headers for minted rater links and the owner token."""

import shutil
import time
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


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def as_rater():
    """`as_rater(study, name)`: headers for that rater's link, minted on first use."""
    minted: dict[tuple[Path, str], str] = {}

    def headers(study: PreferenceStudy, name: str) -> dict[str, str]:
        key = (study.store.path, name)
        if key not in minted:
            minted[key] = study.store.add_link_raters([name], time.time())[name]
        return bearer(minted[key])

    return headers


@pytest.fixture
def as_owner():
    """`as_owner(study)`: headers with the study's owner token, minted on first use."""
    minted: dict[Path, str] = {}

    def headers(study: PreferenceStudy) -> dict[str, str]:
        if study.store.path not in minted:
            minted[study.store.path] = study.store.mint_owner_token()
        return bearer(minted[study.store.path])

    return headers
