"""study.quiet_tf: TensorFlow's start-up noise on a CPU-only machine is dropped, nothing else is."""
import re
import subprocess
import sys

from study.quiet_tf import drop_noise
from tests.conftest import REPO

CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} ", re.M)     # absl/TensorFlow C++ log format: I0000 00:00:...


def test_drop_noise_keeps_every_other_line():
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1796.4 2098 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n"
            "E0000 00:00:1796.9 2098 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: (303)\n"
            "I0000 00:00:1796.3 2098 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU\n"
            "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.\n"
            "I0000 00:00:1796.1 2098 port.cc:153] oneDNN custom operations are on. You may see slightly different "
            "numerical results due to floating-point round-off errors from different computation orders. To turn "
            "them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
            "E0000 00:00:1797.0 2098 some_kernel.cc:10] a real error\n"
            "UserWarning: something the user should see\n")
    assert drop_noise(text) == ("E0000 00:00:1797.0 2098 some_kernel.cc:10] a real error\n"
                                "UserWarning: something the user should see\n")


def test_importing_tensorflow_through_study_prints_no_cpp_lines():
    code = ("import study, sys, keras, tensorflow as tf\n"
            "print(float(tf.reduce_sum(tf.ones(3))))\n"
            "ds = tf.data.Dataset.range(8).map(lambda i: i * 2, num_parallel_calls=2)   # NodeDef noise\n"
            "assert sum(int(v) for v in ds) == 56\n"
            "print('after import', file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "3.0\n"
    assert not CPP_LOG_LINE.search(r.stderr) and "absl::InitializeLog" not in r.stderr, r.stderr
    assert r.stderr.endswith("after import\n")            # stderr works again after the import


def test_an_import_error_still_reaches_stderr(tmp_path):
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("import sys\nprint('loading fake tf', file=sys.stderr)\nraise ImportError('broken build')\n")
    code = "import study\ntry:\n    import tensorflow\nexcept ImportError as e:\n    print('caught', e)\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": f"{REPO}:{tmp_path}"})
    assert r.stdout == "caught broken build\n" and "loading fake tf" in r.stderr


def test_a_traceback_and_a_progress_line_still_reach_stderr_in_order():
    code = ("import study, sys, tensorflow as tf\n"
            "sys.stderr.write('progress 50%\\r'); sys.stderr.flush()\n"
            "sys.stderr.write('progress 100%\\n')\n"
            "raise RuntimeError('a real failure')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})   # bytes: keep the \r
    assert r.returncode == 1
    assert r.stderr.startswith(b"progress 50%\rprogress 100%\nTraceback (most recent call last):")
    assert r.stderr.endswith(b"RuntimeError: a real failure\n")           # drained at exit
