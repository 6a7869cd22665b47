"""Shared modules of the CIFAR-10 study; the stages in stages/ import these."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO and WARNING lines: not in stage logs
os.environ.setdefault("DVC_NO_ANALYTICS", "1")  # DVCLive and DVC: no telemetry calls from our commands

from study import quiet_tf  # noqa: E402  (after the environment it reads)

quiet_tf.install()  # and the lines TensorFlow prints while it loads (see study/quiet_tf.py)
