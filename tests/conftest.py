"""Fixtures shared by every test: where the real shared data lies, and isolated user directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real benchmark data: $CATMNER_DATA, else ../shared/data beside the repository."""
    path = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
    if not (path / "twitter2015" / "train.txt").is_file():
        pytest.fail(f"shared data not found at {path}: set CATMNER_DATA", pytrace=False)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_data_dir()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point user directories at a per-session temp folder so tests never touch ~/.catmner."""
    home = tmp_path_factory.getbasetemp() / "catmner_home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("CATMNER_HOME", str(home))
    monkeypatch.delenv("CATMNER_IMAGES", raising=False)
