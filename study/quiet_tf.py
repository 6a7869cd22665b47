"""TensorFlow without its noise on a CPU-only machine.

`TF_CPP_MIN_LOG_LEVEL` (set in study/__init__.py) hides TensorFlow's C++ INFO and WARNING lines
once its logging is initialised, but not the lines printed before that while the library loads
(`cudart_stub.cc ... Could not find cuda drivers`), nor ERROR lines that are noise: the CUDA
probe's `failed call to cuInit`, or tf.data's `NodeDef mentions attribute use_unbounded_threadpool
which is not in the op definition` on every parallel map. `install()` puts an import hook in
front of `import tensorflow` (however it is reached: keras, dvclive, our modules): from then on
the process's stderr (file descriptor 2, which TensorFlow's C++ code writes to) goes through a
pipe, and a thread copies every line to the real stderr except the known messages in NOISE.
Nothing else is hidden: an import error, a Python warning or traceback, any other TensorFlow
message still reaches stderr, in order; at exit the pipe is drained before the process ends.
"""
from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import os
import re
import sys
import threading

# Printed by TensorFlow on a machine without a usable GPU, or by tf.data on every parallel map
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
    r"NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition",
    r"port\.cc.*oneDNN custom operations are on",  # TF_ENABLE_ONEDNN_OPTS=1 on a CPU without AVX-512
]))


def drop_noise(text: str) -> str:
    """`text` without the lines NOISE matches."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))


class _StderrFilter:
    """File descriptor 2 through a pipe whose reader thread drops NOISE lines (see module doc)."""

    MAYBE_NOISE = re.compile(rb"^([IWEF]\d|WARNING: All|To enable)")   # a partial line that may be noise

    def start(self):
        sys.stderr.flush()
        self.real = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.read = read
        self.thread = threading.Thread(target=self._pump, name="quiet-stderr", daemon=True)
        self.thread.start()
        atexit.register(self.stop)

    def _emit(self, data: bytes):
        kept = drop_noise(data.decode(errors="replace"))
        if kept:
            os.write(self.real, kept.encode())

    def _pump(self):
        pending = b""
        while chunk := os.read(self.read, 1 << 16):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._emit(line + b"\n")
            if pending and not self.MAYBE_NOISE.match(pending):   # e.g. a progress bar's \r: show now
                os.write(self.real, pending)
                pending = b""
        self._emit(pending)
        os.close(self.read)

    def stop(self):
        """Give fd 2 back to the real stderr and wait until the pipe is drained."""
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.real, 2)           # the pipe's last write end closes: the reader sees EOF
        self.thread.join(timeout=10)


class _QuietLoader(importlib.abc.Loader):
    """Starts the stderr filter, then runs the real loader of `tensorflow` and lists its devices."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        _StderrFilter().start()
        self.loader.exec_module(module)
        module.config.list_physical_devices()      # the CUDA probe: now, through the filter


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
