"""Shared modules of the CIFAR-10 study; the stages in stages/ import these."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of stage logs
