"""Fixtures of the evaluation tests: a tiny I3D torchscript written to a temporary folder."""

import pytest
from evaluation_fakes import save_tiny_i3d


@pytest.fixture
def tiny_i3d_path(tmp_path):
    return save_tiny_i3d(tmp_path / "i3d_torchscript.pt")
