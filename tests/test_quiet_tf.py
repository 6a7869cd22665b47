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


def _stage_like(code: str, **kw):
    """Run `code` after `import study, tensorflow` (the filter on), as a stage would; bytes out."""
    return subprocess.run([sys.executable, "-c", "import study, os, sys, tensorflow\n" + code], cwd=REPO,
                          capture_output=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **kw})


def test_a_line_before_an_abort_exit_or_kill_is_not_lost():
    """What TensorFlow's LOG(FATAL) does (a line, then abort), and other sudden ends."""
    for end, code in (("os.abort()", -6), ("os._exit(3)", 3), ("os.kill(os.getpid(), 9)", -9)):
        r = _stage_like(f"os.write(2, b'F0000 fatal.cc:1] Check failed: the last words\\n')\n{end}\n")
        assert r.returncode == code and r.stderr.endswith(b"Check failed: the last words\n"), (end, r.stderr)
    r = _stage_like("os.write(2, b'partial, no newline')\nos.abort()\n")
    assert r.stderr.endswith(b"partial, no newline")


def test_a_faulthandler_dump_and_raw_bytes_pass_unchanged():
    r = _stage_like("os.write(2, b'\\xff\\xfe not utf-8\\n')\nimport ctypes\nctypes.string_at(0)\n",
                    PYTHONFAULTHANDLER="1")
    assert r.returncode == -11 and b"\xff\xfe not utf-8\n" in r.stderr
    assert b"Fatal Python error: Segmentation fault" in r.stderr and b'File "<string>", line 4' in r.stderr


def test_a_large_write_holding_the_gil_does_not_hang():
    # ctypes.PyDLL calls libc's write without releasing the GIL: a filter thread could not drain the pipe
    r = _stage_like("import ctypes\nbuf = b'x' * 300_000 + b'\\n'\n"
                    "assert ctypes.PyDLL(None).write(2, buf, len(buf)) == len(buf)\nprint('done')\n")
    assert r.returncode == 0 and r.stdout == b"done\n" and r.stderr.count(b"x") == 300_000


def test_a_vanished_stderr_reader_does_not_hang_the_stage():
    code = ("import study, sys, time, tensorflow\nfor i in range(2000):\n"
            "    try:\n        print('line', i, file=sys.stderr, flush=True)\n"
            "    except BrokenPipeError:\n        break\n    time.sleep(0.001)\nprint('ended', i, flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    proc.stderr.readline()
    proc.stderr.close()                      # the reader of the real stderr goes away
    out, _ = proc.communicate(timeout=120)   # without a hang
    assert out.startswith(b"ended ") and int(out.split()[1]) < 1999   # the stage saw its writes fail, as without


def test_ctrl_c_to_the_process_group_still_gets_the_stage_s_last_line_out():
    import os
    import signal
    import time
    code = ("import study, sys, time, tensorflow\nprint('ready', flush=True)\ntry:\n    time.sleep(60)\n"
            "except KeyboardInterrupt:\n    print('error: interrupted by Ctrl-C', file=sys.stderr)\n    sys.exit(1)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"}, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline() == b"ready\n"
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)       # a terminal's Ctrl-C reaches the filter process too
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and err.endswith(b"error: interrupted by Ctrl-C\n"), err
