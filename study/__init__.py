"""Shared modules of the CIFAR-10 study; the stages in stages/ import these."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of stage logs
os.environ.setdefault("DVC_NO_ANALYTICS", "1")  # DVCLive and DVC: no telemetry calls from our commands
