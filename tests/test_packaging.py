"""The wheel installs only `lcbench*` import names, and imports from itself."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("lcbench-*.whl")
    return found


def test_wheel_holds_only_lcbench(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"lcbench", next(t for t in tops if t.endswith(".dist-info"))}
    assert "lcbench/strategies/full.py" in names and "lcbench/kernels/__init__.py" in names
    assert "lcbench/tasks/needle.py" in names and "lcbench/tasks/prompts/longbench.json" in names
    for shipped in ("mt", "lookup"):
        assert {f"lcbench/reference/{shipped}/{f}" for f in ("model.safetensors", "tokenizer.json", "config.json")} <= set(names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[lcbench.strategies]" in text and "lcbench = lcbench.cli:main" in text


def test_imports_from_the_wheel(wheel, tmp_path):
    # -S: no site-packages, so nothing can come from the editable install of this checkout
    code = "import lcbench, lcbench.strategies.full, lcbench.kernels; print(lcbench.__file__)"
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(wheel)}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(wheel))


def test_the_kernels_folder_does_not_shadow_pypis_kernels_from_the_repository_root(tmp_path):
    """`python -m` or a worker started in the repository puts its root on sys.path, where the folder
    `kernels/` (lcbench.kernels) would be found as top-level `kernels`, the name of a package
    transformers imports: a stand-in for that package, later on the path, is the one imported."""
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("STAND_IN = True\n")
    code = "import kernels, lcbench.kernels.launch; print(kernels.STAND_IN, kernels.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", str(tmp_path / "kernels" / "__init__.py")]
