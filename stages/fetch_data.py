"""fetch_data: get the images (the CIFAR-10 python archive, or your own class folders), verify, split.

Reads params.yaml (seed, data.*), data/source.json (hash_source's fingerprint of data.url; read
by DVC only, to rerun this stage when a folder's images change) and the images at data.url:
an archive (https/http URL: downloaded; file:// URL or plain path: copied), in both cases into
data/.tmp-fetch_data-*/, where its md5 is computed over the very bytes that are then parsed; or a
local folder of class folders (data.md5 null), read in place (study.image_folder). Images are
resized to data.image_size when they have another size. A verified download is kept in Keras's
datasets folder (~/.keras/datasets, study.download.kept_archive), so the next run on this machine
(another seed, a queued experiment) copies it from there instead of downloading again; a temp file
a killed run left there is removed by the next run (study.download.remove_stale_temps).
Writes data/train.npz, data/val.npz, data/test.npz (x uint8 (N, S, S, 3), y uint8 (N,)),
data/classes.json (the class names, index = label) and data/fetch.json (source url, kind, md5,
bytes read, image size, skipped files, split sizes, per-class counts). The outputs appear
together or not at all: old outputs are removed first and new ones are staged in the same temp
dir, then renamed into place. The temp dir is removed on exit (also on Ctrl-C and SIGTERM); one
left by kill -9 is removed by the next run.
"""
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from study import paths
from study.data import SPLITS, fetch_info, hold_out_test, split_indices
from study.files import write_json, write_npz
from study.params import check_against_data, load
from study.sources import read_source
from study.stage import run_stage

TMP_PREFIX = ".tmp-fetch_data-"  # data/.tmp-*: .gitignore and .dvcignore list it
OUTPUTS = {"train": paths.TRAIN, "val": paths.VAL, "test": paths.TEST,
           "classes": paths.CLASSES, "info": paths.FETCH_INFO}  # info last: written when all is done


@contextmanager
def work_dir():
    """A fresh data/.tmp-fetch_data-* dir (same filesystem as the outputs, ignored by git and DVC),
    removed on exit; dirs left by a killed run are removed first."""
    for stale in paths.DATA.glob(TMP_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    paths.DATA.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=paths.DATA, prefix=TMP_PREFIX))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(params: dict) -> dict:
    """Fetch, verify, parse and split the archive; write data/; return fetch.json's record."""
    data = params["data"]
    for p in OUTPUTS.values():  # a failed fetch must not leave old data that looks current
        p.unlink(missing_ok=True)
    with work_dir() as tmp:
        parsed = read_source(data, tmp)
        if parsed["skipped"]:
            print(f"fetch_data: skipped {len(parsed['skipped'])} file(s) that are not .jpg, .jpeg or .png images "
                  f"in a class folder (first: {parsed['skipped'][0]})", file=sys.stderr)
        (x_tr, y_tr), classes = parsed["train"], parsed["classes"]
        source = {"kind": parsed["kind"], "bytes": parsed["bytes"], "skipped": len(parsed["skipped"])}
        if parsed["test"] is None:  # one class tree: the test split is drawn from it
            (x_tr, y_tr), (x_te, y_te) = hold_out_test(x_tr, y_tr, data, params["seed"])
        else:
            x_te, y_te = parsed["test"]
        idx = split_indices(y_tr, y_te, classes, data, params["seed"])
        splits = {"train": (x_tr[idx["train"]], y_tr[idx["train"]]),
                  "val": (x_tr[idx["val"]], y_tr[idx["val"]]),
                  "test": (x_te[idx["test"]], y_te[idx["test"]])}
        del parsed, x_tr, x_te  # (50000, 32, 32, 3) uint8 copies: free them before writing
        check_against_data(params, len(splits["test"][1]), len(classes))
        info = fetch_info(data, source, splits, classes)
        staged = {k: tmp / p.name for k, p in OUTPUTS.items()}
        for s in SPLITS:
            write_npz(staged[s], x=splits[s][0], y=splits[s][1])
        write_json(staged["classes"], classes)
        write_json(staged["info"], info)
        for k, p in OUTPUTS.items():  # all written: move them into place (info last)
            os.replace(staged[k], p)
    return info


if __name__ == "__main__":
    run_stage(lambda: main(load()))
