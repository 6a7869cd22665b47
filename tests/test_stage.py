"""study.stage: how wall times read."""
from study.stage import format_seconds


def test_format_seconds():
    assert format_seconds(4.04) == "4.0 s"
    assert format_seconds(59.94) == "59.9 s"
    assert format_seconds(185) == "3 min 05 s"
    assert format_seconds(7380) == "2 h 03 min"
