"""TensorFlow without its start-up noise on a CPU-only machine.

`TF_CPP_MIN_LOG_LEVEL` (set in study/__init__.py) hides TensorFlow's C++ INFO and WARNING lines
once its logging is initialised, but not the lines printed before that while the library loads
(`cudart_stub.cc ... Could not find cuda drivers`), nor the ERROR of its CUDA probe
(`failed call to cuInit`). `install()` puts an import hook in front of `import tensorflow`
(however it is reached: keras, dvclive, our modules) that loads TensorFlow and probes its devices
with the process's stderr (file descriptor 2) sent to a temporary file, then writes back every
captured line except the known start-up messages listed in NOISE. Nothing else is hidden: an
import error, a Python warning or any other message still reaches stderr.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

# Printed by TensorFlow while it loads on a machine without a usable GPU (or without AVX-512 builds)
NOISE = re.compile("|".join([
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"cudart_stub\.cc.*Could not find cuda drivers",
    r"cuda_platform\.cc.*failed call to cuInit",
    r"cuda_(dnn|fft|blas)\.cc.*Unable to register",
    r"computation_placer\.cc.*already registered",
    r"cuda_executor\.cc.*(could not open file to read NUMA node|NUMA)",
    r"cpu_feature_guard\.cc.*This TensorFlow binary is optimized",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$",
    r"TF-TRT Warning: Could not find TensorRT",
]))


def drop_noise(text: str) -> str:
    """`text` without the lines NOISE matches."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))


class _CapturedStderr:
    """File descriptor 2 (and sys.stderr) into a temporary file inside the block; on exit, the
    captured text minus NOISE goes to the real stderr."""

    def __enter__(self):
        sys.stderr.flush()
        self.file = tempfile.TemporaryFile(mode="w+b")
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        kept = drop_noise(self.file.read().decode(errors="replace"))
        self.file.close()
        if kept:
            sys.stderr.write(kept)
            sys.stderr.flush()
        return False


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader of `tensorflow`, then lists its devices, inside _CapturedStderr."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _CapturedStderr():
            self.loader.exec_module(module)
            module.config.list_physical_devices()      # the CUDA probe happens here, not later


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` through the other finders and wraps its loader in _QuietLoader."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)                      # one import only; avoid finding ourselves
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Quiet the first `import tensorflow` of this process (no-op if TensorFlow is loaded already)."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
