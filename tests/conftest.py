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


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis budgets of the fuzz tests (tests/test_fuzz_readers.py): small in the default run, larger
    when CI selects them with ``-m fuzz``; CATMNER_FUZZ_EXAMPLES=N sets it either way. Under CI (``CI`` set)
    the examples are derandomized, so a CI run is reproducible: new inputs are explored by developers' runs
    (random each time), and what they find becomes a regression test."""
    try:
        from hypothesis import settings
    except ImportError:  # pragma: no cover - hypothesis is a dev dependency
        return
    chosen = "fuzz" in (config.getoption("markexpr", "") or "").replace("not fuzz", "")
    examples = int(os.environ.get("CATMNER_FUZZ_EXAMPLES") or (1000 if chosen else 40))
    settings.register_profile(
        "catmner",
        max_examples=examples,
        deadline=None,
        print_blob=True,
        derandomize=bool(os.environ.get("CI")),
    )
    settings.load_profile("catmner")


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
