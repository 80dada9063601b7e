"""One error model across kbx, catmner and catmner-bench (issue 31): each package's error base derives from
kb_expand.cli_errors.UserFacingError; every CLI prints `<cli>: error: <one line>` with exit 1 for a known error
or a file error (never a traceback), `<cli>: interrupted` with exit 130 on Ctrl-C, and shows the traceback with
--debug or CATMNER_DEBUG=1 (KBX_DEBUG=1 still works)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from catmner_bench.cli import app as bench_app
from catmner_bench.errors import BenchError
from catmner_model.cli import app as catmner_app
from catmner_model.errors import CatmnerError
from kb_expand.cli import app as kbx_app
from kb_expand.cli_errors import UserFacingError
from kb_expand.errors import KbxError
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    for name in ("CATMNER_DEBUG", "KBX_DEBUG"):
        monkeypatch.delenv(name, raising=False)


def test_one_base_per_package_from_the_shared_pattern():
    for base in (KbxError, CatmnerError, BenchError):
        assert issubclass(base, UserFacingError)
    assert issubclass(CatmnerError, ValueError) and issubclass(BenchError, ValueError)  # as they were
    assert not issubclass(KbxError, CatmnerError) and not issubclass(CatmnerError, BenchError)


# (cli, app, args of a real command, module attribute the command calls, its name)
CASES = [
    ("kbx", kbx_app, ["list"], "kb_expand.report", "list_builds"),
    ("catmner", catmner_app, ["evaluate", "MODEL"], "catmner_model.evaluate", "evaluate_model"),
    ("catmner-bench", bench_app, ["report", "DIR"], "catmner_bench.report", "write_report"),
]


def _raising(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc

    return fail


@pytest.mark.parametrize("prog,app,args,module,name", CASES, ids=[c[0] for c in CASES])
def test_error_format_interrupt_and_debug(prog, app, args, module, name, monkeypatch, tmp_path):
    import importlib

    monkeypatch.setenv("KBX_DB", str(tmp_path / "kb.sqlite"))
    target = importlib.import_module(module)
    args = [str(tmp_path) if a in ("MODEL", "DIR") else a for a in args]
    for exc, line in [
        (KbxError("a.json:3: bad\nsecond line"), f"{prog}: error: a.json:3: bad"),
        (CatmnerError("model: damaged"), f"{prog}: error: model: damaged"),
        (BenchError("records: none"), f"{prog}: error: records: none"),
        (FileNotFoundError(2, "No such file or directory", "/x/y.json"),
         f"{prog}: error: /x/y.json: No such file or directory"),
        (IsADirectoryError(21, "Is a directory", "/x"), f"{prog}: error: /x: Is a directory"),
    ]:  # fmt: skip
        monkeypatch.setattr(target, name, _raising(exc))
        res = runner.invoke(app, args)
        assert res.exit_code == 1 and res.stderr.strip().splitlines() == [line], (
            exc,
            res.stderr,
            res.exception,
        )
    monkeypatch.setattr(target, name, _raising(KeyboardInterrupt()))
    res = runner.invoke(app, args)
    assert res.exit_code == 130 and res.stderr.startswith(f"{prog}: interrupted"), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    # a bug is not hidden: any other exception keeps its traceback
    monkeypatch.setattr(target, name, _raising(ZeroDivisionError("bug")))
    assert isinstance(runner.invoke(app, args).exception, ZeroDivisionError)
    # --debug before the command and CATMNER_DEBUG=1 show the known error's traceback
    monkeypatch.setattr(target, name, _raising(KbxError("shown with its traceback")))
    assert isinstance(runner.invoke(app, ["--debug", *args]).exception, KbxError)
    monkeypatch.setenv("CATMNER_DEBUG", "1")
    assert isinstance(runner.invoke(app, args).exception, KbxError)
    monkeypatch.delenv("CATMNER_DEBUG")
    monkeypatch.setenv("KBX_DEBUG", "1")  # the older kbx variable still works
    assert isinstance(runner.invoke(app, args).exception, KbxError)


@pytest.mark.parametrize(
    "cmd,prog",
    [
        (
            [
                sys.executable,
                "-m",
                "kb_expand.cli",
                "build",
                "-s",
                "visualgenome",
                "--vg",
                "/no/such.json",
                "-q",
            ],
            "kbx",
        ),
        (
            [
                sys.executable,
                "-c",
                "from catmner_model.cli import main; main()",
                "predict",
                "/no/such/model",
                "--text",
                "x",
            ],
            "catmner",
        ),
        (
            [
                sys.executable,
                "-c",
                "from catmner_bench.cli import main; main()",
                "report",
                "/no/such/records",
            ],
            "catmner-bench",
        ),
    ],  # fmt: skip
    ids=["kbx", "catmner", "catmner-bench"],
)
def test_real_processes_print_one_line(cmd, prog, tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("CATMNER_DEBUG", "KBX_DEBUG")}
    env["KBX_DB"] = str(tmp_path / "kb.sqlite")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"{prog}: error: /no/such"), r.stderr


def test_kbx_usage_error_is_clicks_message_not_a_traceback():
    r = subprocess.run([sys.executable, "-m", "kb_expand.cli", "build", "--source", "nope"], capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr and "Invalid value for '--source'" in r.stderr
