"""Parse YAML and JSON files that come from other machines (experiments pulled with `dvc exp pull`)
within fixed bounds: a hostile file costs a few seconds and under 100 MB, and fails as one
UntrustedFileError line naming the file.

The bounds: the file's size, checked before parsing; then a walk of the parsed values that stops
at the first value nested deeper than MAX_DEPTH, a container inside itself (a YAML anchor used in
its own value), an expanded size past MAX_SIZE (YAML aliases repeat a value without repeating its
text: a 300-byte "billion laughs" file expands to gigabytes once printed), an integer too large
to print, or a type JSON lacks (dates, sets, binary).
"""
from __future__ import annotations

import json
import re

# dvc.lock, the largest file read, is ~28 KB; ruamel's pure-Python loader takes ~3 s and ~75 MB
# on 128 KiB of `[0,0,...]` (22 s and 0.5 GB on 1 MiB)
MAX_FILE_BYTES = 128 << 10
MAX_SIZE = 2 * MAX_FILE_BYTES  # one per value plus each string's length: any alias-free file that size fits
MAX_DEPTH = 32                 # ours nest 6 deep at most (dvc.lock: stages, stage, deps, entry, key)
MAX_INT_BITS = 64              # no count, size or seed of ours is larger; str() fails past 4300 digits
SHOWN_CHARS = 80               # a value quoted in a message or label


class UntrustedFileError(ValueError):
    """A file from another machine that is not data this study writes; the message is one line naming it."""


def shown(value, limit: int = SHOWN_CHARS) -> str:
    """`value` as one line of text for a message or label: line breaks, other control characters
    and the bidi controls that reorder what is displayed as spaces, cut to `limit` characters with '…'."""
    text = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]", " ", str(value))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def load_yaml(data: bytes, path: str):
    """YAML bytes -> values checked by check_tree, read as DVC reads params.yaml and dvc.lock
    (study.params.parse: ruamel.yaml's safe loader)."""
    from study.params import ParamsError, parse
    text = _text(data, path)
    try:
        tree = parse(text, path)
    except ParamsError as e:  # its message names the file and the problem on one line
        raise UntrustedFileError(shown(e, 4 * SHOWN_CHARS)) from None
    return check_tree(tree, path)


def load_json(data: bytes, path: str):
    """JSON bytes -> values checked by check_tree."""
    text = _text(data, path)
    try:
        tree = json.loads(text)
    except RecursionError:
        raise UntrustedFileError(f"{path}: nested too deeply to parse") from None
    except ValueError as e:  # not JSON, or an integer over sys.get_int_max_str_digits()
        raise UntrustedFileError(f"{path}: not valid JSON ({shown(e)})") from None
    return check_tree(tree, path)


def _text(data: bytes, path: str) -> str:
    """UTF-8 text of a file no larger than MAX_FILE_BYTES."""
    from study.params import ParamsError, decode
    try:
        return decode(data, path, MAX_FILE_BYTES)
    except ParamsError as e:
        raise UntrustedFileError(str(e)) from None


_END = object()


def check_tree(tree, path: str):
    """`tree` unchanged if it is bounded JSON-like data (see the module docstring), else
    UntrustedFileError naming the first problem. Iterative, so no depth of input recurses."""
    size, ancestors, pending = 0, [], [iter((tree,))]  # pending: one iterator per open container
    while pending:
        node = next(pending[-1], _END)
        if node is _END:
            pending.pop()
            if pending:  # a container's values are done; the root's iterator has no container
                ancestors.pop()
            continue
        problem = _problem(node, ancestors)
        if not problem:  # a dict's keys are strings by now
            size += 1 + (len(node) if isinstance(node, str) else sum(map(len, node)) if isinstance(node, dict) else 0)
            if size > MAX_SIZE:
                problem = f"expands to more than {MAX_SIZE} values and characters (YAML aliases repeat values)"
        if problem:
            raise UntrustedFileError(f"{path}: {problem}")
        if isinstance(node, (dict, list)):
            ancestors.append(node)
            pending.append(iter(node.values() if isinstance(node, dict) else node))
    return tree


def _problem(node, ancestors: list) -> str | None:
    """Why `node`, inside the containers `ancestors`, is not bounded JSON-like data (None if it is)."""
    if not isinstance(node, (dict, list, str, int, float, type(None))):  # bool is an int
        return f"holds a {type(node).__name__}, not JSON-like data"
    if isinstance(node, int) and node.bit_length() > MAX_INT_BITS:
        return f"holds an integer of {node.bit_length()} bits (more than {MAX_INT_BITS})"
    if isinstance(node, (dict, list)):
        if any(node is a for a in ancestors):
            return "contains itself (a YAML anchor used in its own value)"
        if len(ancestors) >= MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(node, dict) and not all(isinstance(k, str) for k in node):
            return "has a key that is not a string"
    return None
