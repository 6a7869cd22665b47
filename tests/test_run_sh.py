"""run.sh: TensorFlow's CUDA libraries are installed exactly when an NVIDIA GPU is there; the study
runs its stages with the venv's python."""
import shutil
import subprocess

import pytest

from tests.conftest import REPO

STUB_PYTHON = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/../../calls.log"
"""


def _setup(tmp_path, gpu: str | None, command: str = "setup"):
    """`bash run.sh <command>` in a copy with a stub venv python (logs its arguments, installs
    nothing), a stub venv dvc (logs its arguments and the `python` its stages would run) and, when
    gpu is given, a stub nvidia-smi that lists it; returns the stubs' calls."""
    root = tmp_path / "project"
    root.mkdir(parents=True)
    for f in ("run.sh", "requirements.txt"):
        shutil.copy(REPO / f, root / f)
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB_PYTHON)
    python.chmod(0o755)
    dvc = python.with_name("dvc")
    dvc.write_text('#!/bin/sh\necho "dvc $* (stages run $(command -v python))" >> "$(dirname "$0")/../../calls.log"\n')
    dvc.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    system_python = bin_dir / "python"        # another python earlier on PATH than the venv would be
    system_python.write_text("#!/bin/sh\nexit 1\n")
    system_python.chmod(0o755)
    if gpu is not None:
        smi = bin_dir / "nvidia-smi"
        smi.write_text(f"#!/bin/sh\necho 'GPU 0: {gpu} (UUID: GPU-0)'\n")
        smi.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run(["bash", "run.sh", command], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return (root / "calls.log").read_text().splitlines(), r.stdout


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a real nvidia-smi would shadow the stub")
def test_cuda_libraries_only_with_an_nvidia_gpu(tmp_path):
    pin = next(l for l in (REPO / "requirements.txt").read_text().splitlines() if l.startswith("tensorflow=="))
    calls, out = _setup(tmp_path / "gpu", "NVIDIA A100-SXM4-40GB")
    assert calls[-1].endswith(f"-m pip install --quiet --disable-pip-version-check {pin.replace('tensorflow', 'tensorflow[and-cuda]')}")
    assert "NVIDIA GPU found (GPU 0: NVIDIA A100-SXM4-40GB" in out
    calls, out = _setup(tmp_path / "cpu", None)
    assert len(calls) == 1 and "-r requirements.txt" in calls[0] and "GPU" not in out


def test_the_study_runs_dvc_repro_with_the_venvs_python(tmp_path):
    # dvc.yaml's stages call `python`: from a fresh clone it must be the venv's, not the system's
    calls, _ = _setup(tmp_path, None, "study")
    root = tmp_path / "project"
    assert calls[-1] == f"dvc repro (stages run {root / '.venv/bin/python'})"
