"""study.statistics on hand-made numbers (Student t quantiles from tables)."""
import math

import numpy as np
import pytest

from study.statistics import describe, paired, verdict

T_975_4 = 2.7764451051977987   # Student t, 97.5th percentile, 4 degrees of freedom (tables)
T_975_2 = 4.302652729911275    # ... 2 degrees of freedom


def test_describe_mean_and_sample_sd():
    assert describe([1, 2, 3, 4, 5]) == {"n": 5, "mean": 3.0, "sd": pytest.approx(math.sqrt(2.5))}
    assert describe([0.7]) == {"n": 1, "mean": 0.7, "sd": None}
    assert describe([]) == {"n": 0, "mean": None, "sd": None}


def test_paired_t_interval_and_sign_count():
    d = paired([1, 2, 3, 4, 5])
    half = T_975_4 * math.sqrt(2.5) / math.sqrt(5)
    assert d["ci"] == [pytest.approx(3 - half), pytest.approx(3 + half)]
    assert (d["positive"], d["negative"]) == (5, 0)
    d = paired([-0.01, 0.005, 0.02])
    sd = np.std([-0.01, 0.005, 0.02], ddof=1)
    assert d["mean"] == pytest.approx(0.005)
    assert d["ci"] == [pytest.approx(0.005 - T_975_2 * sd / math.sqrt(3)),
                       pytest.approx(0.005 + T_975_2 * sd / math.sqrt(3))]
    assert (d["positive"], d["negative"]) == (2, 1)
    assert paired([0.01])["ci"] is None


def test_verdict_claims_no_more_than_the_interval():
    assert verdict(paired([-0.01, 0.005, 0.02]), "center_loss", 100, " points") == \
        "no detectable difference at n=3: +0.5 points [-3.23, +4.23] (2 of 3 seeds agree in sign)"
    assert verdict(paired([0.004, 0.006, 0.008, 0.005, 0.007]), "center_loss", 100, " points") == \
        "center_loss higher: +0.6 points [+0.404, +0.796] (5 of 5 seeds agree in sign)"
    assert verdict(paired([-0.2, -0.3, -0.25]), "center_loss").startswith("center_loss lower: -0.25 [")
    assert verdict(paired([0.01]), "center_loss", 100, " points") == "one seed: +1 points; no interval from one seed"
    assert verdict(paired([]), "center_loss") == "not measured"
    # skewed: the mean is positive while most seeds are negative; the count follows the mean
    skewed = verdict(paired([0.09, -0.01, -0.01, -0.01]), "center_loss", 100, " points")
    assert skewed.endswith("(1 of 4 seeds agree in sign)")


def test_equal_differences_give_a_zero_width_interval_without_warnings():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = paired([0.01, 0.01, 0.01])
    assert d["ci"] == [pytest.approx(0.01), pytest.approx(0.01)] and d["sd"] == pytest.approx(0, abs=1e-15)
