"""TensorFlow without its noise on a CPU-only machine.

`TF_CPP_MIN_LOG_LEVEL` (set in study/__init__.py) hides TensorFlow's C++ INFO and WARNING lines
once its logging is initialised, but not the lines printed before that while the library loads
(`cudart_stub.cc ... Could not find cuda drivers`), nor ERROR lines that are noise: the CUDA
probe's `failed call to cuInit`, or tf.data's `NodeDef mentions attribute use_unbounded_threadpool
which is not in the op definition` on every parallel map. `install()` puts an import hook in
front of `import tensorflow` (however it is reached: keras, dvclive, our modules): from then on
the process's stderr (file descriptor 2, which TensorFlow's C++ code writes to) goes through a
pipe to a small filter *process* (this file run as a script) that copies every byte to the real
stderr except the lines NOISE matches.

A separate process, not a thread, so that nothing is lost or stuck: it keeps draining the pipe
after the stage dies in any way (an abort from TensorFlow's LOG(FATAL), os._exit, SIGKILL, a
faulthandler dump) and ends when the pipe's last writer is gone; it does not wait for the GIL of
a stage that writes a lot at once; it ignores Ctrl-C, SIGTERM and SIGHUP, which end the stage and
so the filter through end of file; and if the real stderr's reader goes away it exits, so the
stage's writes fail as they would without it. Bytes pass through as they are (no decoding); a
partial line goes out at once unless it may be noise, then when its line ends, after HOLD_S
seconds, or at end of file. At a normal exit the stage waits for the filter to finish.
"""
from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import os
import re
import select
import signal
import sys

# Printed by TensorFlow on a machine without a usable GPU, or by tf.data on every parallel map
NOISE_PATTERNS = [
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
]
NOISE = re.compile("|".join(NOISE_PATTERNS))
NOISE_BYTES = re.compile("|".join(NOISE_PATTERNS).encode())
MAYBE_NOISE = re.compile(rb"^([IWEF]\d|WARNING: All|To enable)")   # a partial line that may be noise
HOLD_S = 0.2            # the longest a partial line that may be noise waits for its end
WAIT_AT_EXIT_S = 10     # a normal exit waits this long for the filter to write the rest


def drop_noise(text: str) -> str:
    """`text` without the lines NOISE matches."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def filter_stream(src: int, dst: int) -> None:
    """Copy file descriptor src to dst until end of file, without NOISE lines (see module doc)."""
    pending = b""
    while True:
        if pending and not select.select([src], [], [], HOLD_S)[0]:
            _write_all(dst, pending)             # a partial line that stayed partial: out now
            pending = b""
            continue
        chunk = os.read(src, 1 << 16)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        out = b"".join(line + b"\n" for line in lines if not NOISE_BYTES.search(line))
        if pending and not MAYBE_NOISE.match(pending):   # e.g. a progress bar's \r: show now
            out, pending = out + pending, b""
        _write_all(dst, out)
    _write_all(dst, pending)


class _StderrFilter:
    """File descriptor 2 through a pipe to the filter process (see module doc)."""

    def start(self):
        import subprocess
        sys.stderr.flush()
        self.real = os.dup(2)                        # not inherited by later child processes
        read, write = os.pipe()
        self.process = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__)],
                                        stdin=read, stdout=self.real, stderr=self.real)
        os.close(read)
        os.dup2(write, 2)
        os.close(write)
        atexit.register(self.stop)

    def stop(self):
        """Give fd 2 back to the real stderr and wait until the filter has written the rest."""
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.real, 2)           # our end of the pipe closes: the filter sees end of file
        try:
            self.process.wait(timeout=WAIT_AT_EXIT_S)   # (a child process of ours may hold it longer)
        except Exception:  # noqa: BLE001 - TimeoutExpired, or interrupted at exit: never block the exit
            pass


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


if __name__ == "__main__":      # the filter process: stdin is the pipe, stdout the real stderr
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        filter_stream(0, 1)
    except OSError:             # the real stderr is gone (EPIPE): so is our reason to run
        sys.exit(1)
