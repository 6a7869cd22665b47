"""Statistics of paired seeds for the summary: mean and sd, the paired t-interval, and a verdict
that claims no more than the interval. Pure functions of lists of numbers.

The interval is written out rather than taken from scipy.stats.ttest_1samp(...).confidence_interval():
for differences that are all equal (two models with the same accuracy on every seed) scipy warns
of precision loss and may give NaN, where the interval is [mean, mean].
"""
from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95


def describe(values) -> dict:
    """n, mean and sample sd (None below 2 values) of a list of numbers."""
    x = np.asarray(values, float)
    n = len(x)
    return {"n": n, "mean": float(x.mean()) if n else None,
            "sd": float(x.std(ddof=1)) if n > 1 else None}


def paired(diffs, confidence: float = CONFIDENCE) -> dict:
    """Paired differences: describe() plus the t-interval of the mean (None below 2 values) and
    how many differences are positive and negative."""
    from scipy import stats
    out = describe(diffs)
    x = np.asarray(diffs, float)
    out["ci"] = None
    if out["n"] > 1:
        half = stats.t.ppf((1 + confidence) / 2, out["n"] - 1) * out["sd"] / math.sqrt(out["n"])
        out["ci"] = [out["mean"] - half, out["mean"] + half]
    out["positive"], out["negative"] = int((x > 0).sum()), int((x < 0).sum())
    return out


def verdict(d: dict, name: str, scale: float = 1, unit: str = "") -> str:
    """A plain sentence on a paired() result of `name` minus another (in `unit` after multiplying
    by `scale`) that never claims more than the interval: a direction only when the whole interval
    is on one side of 0; 'k of n seeds agree in sign' counts the seeds on the mean's side."""
    n = d["n"]
    if n == 0:
        return "not measured"
    mean = f"{d['mean'] * scale:+.3g}{unit}"
    if n == 1:
        return f"one seed: {mean}; no interval from one seed"
    lo, hi = (v * scale for v in d["ci"])
    interval = f"{mean} [{lo:+.3g}, {hi:+.3g}]"
    agree = d["positive"] if d["mean"] > 0 else d["negative"] if d["mean"] < 0 else max(d["positive"], d["negative"])
    if lo <= 0 <= hi:
        return f"no detectable difference at n={n}: {interval} ({agree} of {n} seeds agree in sign)"
    side = "higher" if lo > 0 else "lower"
    return f"{name} {side}: {interval} ({agree} of {n} seeds agree in sign)"
