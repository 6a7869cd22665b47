"""run.sh's set-up: TensorFlow's CUDA libraries are installed exactly when an NVIDIA GPU is there."""
import shutil
import subprocess

import pytest

from tests.conftest import REPO

STUB_PYTHON = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/../../calls.log"
"""


def _setup(tmp_path, gpu: str | None):
    """`bash run.sh setup` in a copy with a stub venv python (logs its arguments, installs nothing)
    and, when gpu is given, a stub nvidia-smi that lists it; returns the stub's calls."""
    root = tmp_path / "project"
    root.mkdir(parents=True)
    for f in ("run.sh", "requirements.txt"):
        shutil.copy(REPO / f, root / f)
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB_PYTHON)
    python.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    if gpu is not None:
        smi = bin_dir / "nvidia-smi"
        smi.write_text(f"#!/bin/sh\necho 'GPU 0: {gpu} (UUID: GPU-0)'\n")
        smi.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    r = subprocess.run(["bash", "run.sh", "setup"], cwd=root, env=env, capture_output=True, text=True, timeout=60)
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
