"""The wheel carries every file the code reads from the package.

The tests run against an editable install, where a file missing from the package data still
exists on disk; this test builds the wheel (``pip wheel --no-deps``) from a copy of the source
tree and looks inside it. ``.ci/install_check`` goes further (fresh venvs, wheel and sdist).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fusion.config import config_dir
from fusion.report import render

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("features", "fusion")
# what a build needs from the tree; fusion/configs is a symlink to configs/
BUILD_INPUTS = ("pyproject.toml", "README.md", "MANIFEST.in", "configs", *PACKAGE_DIRS)


def _files_under(folder: Path) -> set[str]:
    """Wheel names (``fusion/configs/default.toml``) of the files below ``folder``."""
    fusion_root = Path(render.__file__).resolve().parents[1]  # the installed fusion/ package
    out = set()
    for p in folder.rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts:
            out.add((Path("fusion") / p.relative_to(fusion_root)).as_posix())
    return out


def _data_files_the_code_reads() -> set[str]:
    """Every data file the code opens from the package, from the folders the code names."""
    config_root = config_dir()
    fusion_root = Path(render.__file__).resolve().parents[1]
    files = set()
    for p in config_root.iterdir():  # config_dir() may be a symlink: name it from fusion/
        if p.is_file():
            files.add(f"fusion/configs/{p.name}")
    files |= _files_under(render.TEMPLATES) | _files_under(render.STATIC)
    assert (fusion_root / "configs").resolve() == config_root.resolve()
    return files


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif p.exists():
            shutil.copy2(p, src / name)
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
    if importlib.util.find_spec("setuptools") is not None:
        # build with the setuptools installed here: no package index needed
        cmd[4:4] = ["--no-build-isolation", "--no-index"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = out.glob("vocalfusion-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def test_data_files_are_known() -> None:
    files = _data_files_the_code_reads()
    # the minimum the engine and the report cannot run without
    for name in ("fusion/configs/default.toml", "fusion/configs/fusion_prior.json",
                 "fusion/configs/population_norms.json", "fusion/report/templates/session.html",
                 "fusion/report/static/report.css", "fusion/report/static/report.js"):
        assert name in files


def test_wheel_holds_every_data_file_the_code_reads(wheel_names: set[str]) -> None:
    missing = sorted(_data_files_the_code_reads() - wheel_names)
    assert not missing, f"not in the wheel (add them to [tool.setuptools.package-data]): {missing}"


def test_wheel_holds_every_module_and_type_marker(wheel_names: set[str]) -> None:
    expected = {"features/py.typed", "fusion/py.typed"}
    for pkg in PACKAGE_DIRS:
        for p in (ROOT / pkg).rglob("*.py"):
            if "__pycache__" not in p.parts:
                expected.add(p.relative_to(ROOT).as_posix())
    missing = sorted(expected - wheel_names)
    assert not missing, f"not in the wheel: {missing}"
    # the console script users run
    assert any(n.endswith(".dist-info/entry_points.txt") for n in wheel_names)


def test_top_level_configs_is_what_the_package_ships() -> None:
    # fusion/configs must be the top-level configs/ folder (a symlink), not a diverging copy
    assert (ROOT / "fusion" / "configs").resolve() == (ROOT / "configs").resolve()
