"""The README's first set-up line (`.ci/setup`) as written, on a machine where apt-get, dpkg, sudo and uv are
stand-ins that record their calls: as root it needs no sudo, as a user it goes through sudo, and it always runs
`apt-get update` before installing; `.ci/run` runs the same script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _fake_bin(tmp_path: Path, uid: int, with_sudo: bool) -> tuple[Path, Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    tools = {"apt-get": "", "dpkg": "exit 1", "uv": "", "id": f"echo {uid}"}  # dpkg: nothing installed yet
    if with_sudo:
        tools["sudo"] = 'echo "sudo $*" >> "$LOG"; exec "$@"'
    for name, body in tools.items():
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\n[ "{name}" = sudo ] || echo "{name} $*" >> "$LOG"\n{body}\n')
        script.chmod(0o755)
    for tool in ("bash", "dirname", "python3", "sh", "cat"):  # the rest of a minimal system
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    return bin_dir, log


def _run(tmp_path: Path, uid: int, with_sudo: bool) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir, log = _fake_bin(tmp_path, uid, with_sudo)
    env = {"PATH": str(bin_dir), "LOG": str(log), "HOME": str(tmp_path)}
    r = subprocess.run([str(REPO / ".ci" / "setup")], env=env, capture_output=True, text=True, timeout=60)
    return r, log.read_text().splitlines() if log.exists() else []


def test_readme_first_setup_line_is_the_ci_script():
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Set-up", 1)[1].split("```bash\n", 1)[1]
    assert block.splitlines()[0].split("#")[0].strip() == ".ci/setup"
    assert re.search(r"^\.ci/setup$", (REPO / ".ci" / "run").read_text(), re.M)


def test_setup_as_root_needs_no_sudo(tmp_path):
    r, calls = _run(tmp_path, uid=0, with_sudo=False)
    assert r.returncode == 0, r.stderr
    apt = [c for c in calls if c.startswith("apt-get")]
    assert apt[0] == "apt-get update -qq" and apt[1].startswith("apt-get install -y -qq wordnet-base")
    assert not any(c.startswith("sudo") for c in calls) and "uv sync --locked --compile-bytecode" in calls


def test_setup_as_user_goes_through_sudo(tmp_path):
    r, calls = _run(tmp_path, uid=1000, with_sudo=True)
    assert r.returncode == 0, r.stderr
    sudo = [c for c in calls if c.startswith("sudo")]
    assert sudo[0].startswith("sudo ") and sudo[0].endswith("apt-get update -qq")
    assert "apt-get install -y -qq wordnet-base wordnet-sense-index" in sudo[1]


def test_setup_as_user_without_sudo_says_so(tmp_path):
    r, _ = _run(tmp_path, uid=1000, with_sudo=False)
    assert (
        r.returncode == 1 and r.stderr.strip() == "setup: run as root, or install sudo (apt-get needs root)"
    )


def test_setup_script_is_executable():
    assert os.access(REPO / ".ci" / "setup", os.X_OK)
