"""study.curves: the one reader of DVCLive's TSV curves, and time to accuracy from them."""
import pytest

from study.curves import parse_curve, read_curve, time_to_val_accuracy, trim_curves


def _live(tmp_path, acc, elapsed):
    metrics = tmp_path / "plots" / "metrics"
    (metrics / "val").mkdir(parents=True)
    (metrics / "val" / "accuracy.tsv").write_text("timestamp\tstep\taccuracy\n" + "".join(
        f"{100 + i}\t{i}\t{a}\n" for i, a in enumerate(acc)))
    (metrics / "elapsed_s.tsv").write_text("step\telapsed_s\n" + "".join(f"{i}\t{e}\n" for i, e in enumerate(elapsed)))
    return tmp_path


def test_curves_read_by_step_and_time_to_accuracy(tmp_path):
    live = _live(tmp_path, [0.5, 0.81, 0.86, 0.84], [10.0, 20.0, 30.0, 40.0])
    assert read_curve(live, "val/accuracy") == {0: 0.5, 1: 0.81, 2: 0.86, 3: 0.84}    # timestamp column skipped
    assert read_curve(live, "train/loss") == {}                                       # absent
    assert time_to_val_accuracy(live) == {"0_80": {"epoch": 2, "seconds": 20.0},
                                          "0_85": {"epoch": 3, "seconds": 30.0}, "0_864": None}
    trim_curves(live, 2)
    assert read_curve(live, "val/accuracy") == {0: 0.5, 1: 0.81} and read_curve(live, "elapsed_s") == {0: 10.0, 1: 20.0}


@pytest.mark.parametrize("text", ["", "accuracy\n0.5\n", "step\taccuracy\n0\tabc\n", "step\taccuracy\n0\n",
                                  "step\taccuracy\nx\t0.5\n", "step\taccuracy\n0\tnan\n", "step\n0\n"])
def test_a_damaged_curve_is_a_value_error(tmp_path, text):
    (tmp_path / "c.tsv").write_text(text)
    with pytest.raises(ValueError):
        parse_curve(tmp_path / "c.tsv")
