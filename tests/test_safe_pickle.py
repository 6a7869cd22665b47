"""study.safe_pickle: the two forms of the archive's pickles load; code, other protocols and
pickles of a few dozen bytes to 1 MB that ask for >= 1 GB are refused in one line before they allocate."""
import pickle
import struct

import numpy as np
import pytest

from study.errors import StageError
from study.safe_pickle import MAX_PICKLE_OPS, load_pickle
from tests.cifar_archive import FORMS, batch_pickle, int_list, pickle_official, py2_array, raw_pickle

WHERE = "archive: cifar-10-batches-py/m"


def test_unpickler_allows_exactly_what_the_two_forms_need():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    obj = {b"data": arr, b"labels": [1, 2], b"names": [b"a.png", "b.png"], b"n": 10000}
    for form in FORMS:
        got = load_pickle(pickle_official(obj, form), WHERE)
        np.testing.assert_array_equal(got[b"data"], arr)
        assert got[b"labels"] == [1, 2] and got[b"n"] == 10000
    for proto in (3, 4, 5):  # protocols the archive never used: refused by opcode, not parsed
        with pytest.raises(StageError, match=r"uses pickle opcode \w+, which a CIFAR-10 batch does not need"):
            load_pickle(pickle.dumps(obj, protocol=proto), WHERE)
    with pytest.raises(StageError, match="wants collections.OrderedDict"):
        load_pickle(pickle.dumps(__import__("collections").OrderedDict(a=1), protocol=2), WHERE)
    with pytest.raises(StageError, match="wants numpy._core.multiarray.scalar"):  # numpy scalars: not needed
        load_pickle(pickle.dumps({b"s": np.uint8(7)}, protocol=2), WHERE)
    # _codecs.encode is allowed only as protocol 2 uses it (latin1); other codecs are refused
    evil = raw_pickle(b"c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R")
    with pytest.raises(StageError, match="wants _codecs.encode with anything but"):
        load_pickle(evil, WHERE)


# ---------------------------------------------------------------- bounded unpickling
# Each pickle is a few dozen to a few hundred kB and asks for far more memory than it holds.

ROWS_OK = np.zeros((2, 3072), np.uint8).tobytes()
BIG_STRING = b"X" * 200_000  # memoized once, then encoded again and again


def hostile_pickles() -> dict[str, tuple[bytes, str]]:
    """{name: (pickle bytes, pattern of the one-line error)}: each tries to allocate >= 1 GB."""
    many_encodes = (b"c_codecs\nencode\nq\x00" + pickle.BINUNICODE + struct.pack("<I", len(BIG_STRING))
                    + BIG_STRING + b"q\x01" + pickle.EMPTY_LIST + pickle.MARK
                    + (b"h\x00h\x01X\x06\x00\x00\x00latin1\x86R") * 6000 + pickle.APPENDS)
    return {
        # _reconstruct's own shape argument allocates: (10**9,) would be 1 GB
        "reconstruct_shape": (batch_pickle(py2_array((2, 3072), ROWS_OK).replace(
            b"K\x00\x85", b"J" + struct.pack("<i", 10**9) + b"\x85", 1), int_list([1, 2])),
            r"_reconstruct with arguments other than \(numpy.ndarray, \(0,\), b'b'\)"),
        # a shape of 30,000 rows with the bytes of 2 behind it
        "rows_without_bytes": (batch_pickle(py2_array((30_000, 3072), ROWS_OK), int_list([1] * 200)),
                               r"ndarray of shape \(30000, 3072\) uint8 with 6144 bytes behind it"),
        # bytes(10**9) through the builtin
        "bytes_builtin": (raw_pickle(b"c__builtin__\nbytes\nJ" + struct.pack("<i", 10**9) + b"\x85R"),
                          r"wants builtins.bytes which is not allowed"),
        # an object array: its elements would be built from a list
        "object_dtype": (batch_pickle(py2_array((2,), b"", dtype=b"O8"), int_list([1, 2])),
                         r"numpy.dtype\('O8'\): only plain number types are allowed"),
        # 6,000 latin-1 copies of one memoized 200 kB string: 1.2 GB from 200 kB
        "encode_amplification": (raw_pickle(many_encodes), r"more bytes decoded than the member holds"),
        # a memo index of 2**31 makes the C unpickler size its memo table to match
        "huge_memo_index": (raw_pickle(pickle.NONE + b"r" + struct.pack("<I", 2**31)),
                            r"pickle memo index 2147483648 is out of range"),
        # a string that claims 2 GB with 5 bytes behind it
        "long_string_claim": (raw_pickle(pickle.BINSTRING + struct.pack("<i", 2**31 - 1) + b"short"),
                              r"is not a readable pickle \(ValueError: expected 2147483647 bytes"),
        # a million empty lists: ~60 MB of Python objects per MB of pickle
        "opcode_flood": (raw_pickle(pickle.MARK + pickle.EMPTY_LIST * 1_000_000 + pickle.TUPLE),
                         rf"has more than {MAX_PICKLE_OPS} pickle opcodes"),
    }


@pytest.mark.parametrize("name", sorted(hostile_pickles()))
def test_hostile_pickle_is_refused_before_it_allocates(name):
    data, pattern = hostile_pickles()[name]
    assert len(data) < 2_000_000
    with pytest.raises(StageError, match=pattern) as e:
        load_pickle(data, "archive: cifar-10-batches-py/data_batch_1")
    assert "\n" not in str(e.value) and str(e.value).startswith("archive: cifar-10-batches-py/data_batch_1")
