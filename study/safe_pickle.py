"""Unpickling CIFAR-10 batches without running their code and in bounded memory.

The official archive's batches are Python 2 pickles (protocol 2); re-pickled copies may be
Python 3's protocol 2. Both are read here, and nothing else:
- the opcodes are walked first without building anything (pickletools.genops reads each
  declared length from the bytes present): only those the two forms use, at most
  MAX_PICKLE_OPS of them, memo indices in range;
- globals resolve only to checked stand-ins (RestrictedUnpickler): an archive whose pickle
  would run code is refused even when its md5 matches, and arrays are built only from bytes
  actually present, with plain number dtypes.
Every problem is a one-line StageError.
"""
from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
import pickletools
import re
import reprlib

import numpy as np

from study.errors import StageError

MAX_ROWS, ROW = 10_000, 3072            # an official batch: 10,000 images of 3,072 bytes
# A batch pickles as 3 opcodes per image in the Python 2 form (the official one) and 9 in the
# Python 3 form (docs/troubleshooting.md gives the counts)
MAX_PICKLE_OPS = 16 * MAX_ROWS + 1_000  # up to 9 per image, and slack


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list (it would run code)."""


class _Refused(pickle.UnpicklingError):
    """An allowed global called with arguments or state outside what a CIFAR-10 batch holds."""


# Everything the two forms of the archive use: the official release (Python 2: byte strings
# as BINSTRING, numpy.core names) and Python 3's protocol 2 (bytes as _codecs.encode(str,
# 'latin1'), numpy._core names). Protocol 2 has no opcodes that read a length larger than
# what follows, and the ones below build only small objects from the stream's own bytes.
PICKLE_OPCODES = frozenset({
    "PROTO", "STOP", "MARK", "NONE", "NEWTRUE", "NEWFALSE", "BININT", "BININT1", "BININT2",
    "SHORT_BINSTRING", "BINSTRING", "BINUNICODE", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2",
    "TUPLE3", "EMPTY_LIST", "APPEND", "APPENDS", "EMPTY_DICT", "SETITEM", "SETITEMS",
    "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET", "GLOBAL", "REDUCE", "BUILD"})
_PUTS = ("BINPUT", "LONG_BINPUT")
_DTYPE = re.compile(r"[biuf][1248]")  # plain numbers: no objects, strings, records or sub-arrays


def _prescan(data: bytes, where: str) -> None:
    """Walk the opcodes without building anything: refuse any outside PICKLE_OPCODES, more than
    MAX_PICKLE_OPS of them, or a memo index beyond the opcodes seen (it sizes the memo)."""
    n = 0
    try:
        for op, arg, _pos in pickletools.genops(data):  # reads each length from what is present
            n += 1
            if n > MAX_PICKLE_OPS:
                raise StageError(f"{where} has more than {MAX_PICKLE_OPS} pickle opcodes; "
                                 f"a CIFAR-10 batch of {MAX_ROWS} images needs fewer")
            if op.name not in PICKLE_OPCODES:
                raise StageError(f"{where} uses pickle opcode {op.name}, which a CIFAR-10 batch "
                                 "does not need (refusing it)")
            if op.name in _PUTS and arg > n:
                raise StageError(f"{where} pickle memo index {arg} is out of range")
    except StageError:
        raise
    except Exception as e:  # truncated arguments, unknown opcodes, bad UTF-8
        raise StageError(f"{where} is not a readable pickle ({type(e).__name__}: {e})") from None


class _Dtype:
    """`numpy.dtype(spec, align, copy)` of a plain number type, its state checked before use."""

    def __init__(self, spec, align=False, copy=True):
        spec = spec.decode("latin1") if isinstance(spec, bytes) else spec
        if not (isinstance(spec, str) and _DTYPE.fullmatch(spec)) or align:
            raise _Refused(f"numpy.dtype({short_repr(spec)}): only plain number types are allowed")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state):
        # numpy writes (3, byteorder, None, None, None, -1, -1, 0); anything else would
        # describe records, sub-arrays or objects
        plain = isinstance(state, tuple) and len(state) == 8 and state[0] == 3 \
            and state[2:] == (None, None, None, -1, -1, 0)
        order = state[1] if plain else None
        order = order.decode("latin1") if isinstance(order, bytes) else order
        if order not in ("<", ">", "|", "="):
            raise _Refused(f"numpy.dtype state {short_repr(state)}: only plain number types are allowed")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


class _Array:
    """What `_reconstruct(ndarray, (0,), b'b')` gives: the array exists once BUILD's state is checked."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        # (version 1, shape, dtype, fortran order, raw bytes): the shape must fit the bytes present
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise _Refused(f"ndarray state {short_repr(state)} is not (1, shape, dtype, order, bytes)")
        _, shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and 1 <= len(shape) <= 2
                and all(type(d) is int and 0 <= d <= MAX_ROWS * ROW for d in shape)):
            raise _Refused(f"ndarray shape {short_repr(shape)}: expected 1 or 2 dimensions")
        if not isinstance(dtype, _Dtype) or not isinstance(raw, bytes) or type(fortran) not in (bool, int):
            raise _Refused("ndarray data that is not raw bytes of a plain number type")
        if math.prod(shape) * dtype.dtype.itemsize != len(raw):
            raise _Refused(f"ndarray of shape {shape} {dtype.dtype} with {len(raw)} bytes behind it")
        self.array = np.frombuffer(raw, dtype.dtype).reshape(shape, order="F" if fortran else "C")


def short_repr(value) -> str:
    """A repr that stays short whatever the pickle built."""
    return reprlib.repr(value)


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler for CIFAR-10 batches: find_class resolves only the globals the two forms of
    the archive use, each replaced by a checked stand-in that allocates only what the stream's
    own bytes justify (`_codecs.encode` within a byte budget, dtypes of plain numbers, arrays
    whose shape matches the bytes present). Anything else raises RefusedGlobal."""

    _NDARRAY = object()  # `numpy.ndarray` is only ever an argument of _reconstruct

    def __init__(self, file, budget: int):
        super().__init__(file, encoding="bytes")  # Python 2 str -> bytes (official keys are bytes)
        self._budget = budget
        allowed = {("_codecs", "encode"): self._encode, ("numpy", "ndarray"): self._NDARRAY,
                   ("numpy", "dtype"): _Dtype}
        for core in ("numpy.core", "numpy._core"):  # official archive: numpy.core; numpy >= 2: numpy._core
            allowed[(f"{core}.multiarray", "_reconstruct")] = self._reconstruct
        self._allowed = allowed

    def find_class(self, module, name):
        obj = self._allowed.get((module, name))
        if obj is None:  # named as Python 3 calls it (protocol 2 writes __builtin__.exec)
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            raise RefusedGlobal(f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}")
        return obj

    def _encode(self, text, encoding="utf-8", errors="strict"):
        """`_codecs.encode(str, 'latin1')`, as protocol 2 writes bytes; at most `budget` bytes in all."""
        if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1") \
                or errors != "strict":
            raise RefusedGlobal("_codecs.encode with anything but (str, 'latin1')")
        self._budget -= len(text)
        if self._budget < 0:
            raise _Refused("more bytes decoded than the member holds")
        return text.encode("latin1")

    def _reconstruct(self, subtype, shape, typecode):
        if subtype is not self._NDARRAY or shape != (0,) or typecode != b"b":
            raise _Refused("_reconstruct with arguments other than (numpy.ndarray, (0,), b'b')")
        return _Array()


def _resolve(obj):
    """Top-level values of a batch dict: checked array stand-ins -> their numpy arrays."""
    if isinstance(obj, _Array):
        if obj.array is None:
            raise _Refused("an ndarray without its data")
        return obj.array
    if isinstance(obj, dict):
        return {k: _resolve(v) if isinstance(v, _Array) else v for k, v in obj.items()}
    return obj


def load_pickle(data: bytes, where: str):
    """Unpickle one archive member safely (see RestrictedUnpickler); a StageError starting with
    `where` (e.g. 'archive: cifar-10-batches-py/data_batch_1') names what is wrong."""
    _prescan(data, where)
    try:
        return _resolve(RestrictedUnpickler(io.BytesIO(data), budget=len(data)).load())
    except RefusedGlobal as e:
        raise StageError(f"{where} pickle wants {e} which is not allowed "
                         "(refusing to run code from the archive)") from None
    except _Refused as e:
        raise StageError(f"{where}: {e} (refusing it)") from None
    except Exception as e:  # corrupt pickles raise anything from EOFError to TypeError
        raise StageError(f"{where} is not a readable pickle ({type(e).__name__}: {short_repr(str(e))})") from None
