"""study.untrusted: files from other machines are parsed within bounds, each failing in one line."""
import pytest

from study.untrusted import MAX_DEPTH, MAX_FILE_BYTES, MAX_SIZE, UntrustedFileError, check_tree, load_yaml, shown


def _nested(levels: int) -> list:
    tree = []
    for _ in range(levels - 1):
        tree = [tree]
    return tree


def test_bounds_hold_at_their_limits_and_fail_past_them():
    assert check_tree(_nested(MAX_DEPTH), "f") == _nested(MAX_DEPTH)
    with pytest.raises(UntrustedFileError, match=f"^f: nested deeper than {MAX_DEPTH} levels$"):
        check_tree(_nested(MAX_DEPTH + 1), "f")
    word, fits = "x" * 199, (MAX_SIZE - 1) // 200  # a list of n references to one string: 1 + n * (1 + 199)
    assert check_tree([word] * fits, "f")
    with pytest.raises(UntrustedFileError, match="expands to more than"):
        check_tree([word] * (fits + 1), "f")
    assert load_yaml(b"#" * MAX_FILE_BYTES, "f") is None  # only a comment: no values
    with pytest.raises(UntrustedFileError, match="^f: larger than 128 KiB$"):
        load_yaml(b"#" * (MAX_FILE_BYTES + 1), "f")
    ordinary = b"a: &a [1, 2]\nb: *a\nc: 18446744073709551615\n"  # an alias, the largest integer allowed
    assert load_yaml(ordinary, "f") == {"a": [1, 2], "b": [1, 2], "c": 2**64 - 1}


def test_shown_is_one_short_line():
    assert shown("a\nb\tc\u202ed") == "a b c d"
    assert shown("x" * 100, 10) == "x" * 9 + "…"
    assert shown("plain") == "plain"
