"""fetch_data: get the CIFAR-10 python archive, verify its md5, parse it safely, split it.

Reads params.yaml (seed, data.url, data.md5, data.val_size, data.train_size, data.test_size,
data.timeout, data.retries) and the archive at data.url (https/http URL: downloaded; file:// URL
or plain path: copied), in both cases into data/.tmp-fetch_data-*/, where its md5 is computed
over the very bytes that are then parsed. A verified download is kept in Keras's datasets folder
(~/.keras/datasets, study.download.kept_archive), so the next run on this machine (another seed,
a queued experiment) copies it from there instead of downloading again; a temp file a killed run
left there is removed by the next run (study.download.remove_stale_temps).
Writes data/train.npz, data/val.npz, data/test.npz (x uint8 (N, 32, 32, 3), y uint8 (N,)),
data/classes.json (the 10 class names, index = label) and data/fetch.json (source url, md5,
archive size, split sizes, per-class counts). The outputs appear together or not at all:
old outputs are removed first and new ones are staged in the same temp dir, then renamed into
place. The temp dir is removed on exit (also on Ctrl-C and SIGTERM); one left by kill -9 is
removed by the next run.
"""
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from study import paths
from study.cifar import read_archive
from study.data import SPLITS, fetch_info, split_indices
from study.download import fetch_archive_once
from study.files import write_json, write_npz
from study.params import load
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
        archive = fetch_archive_once(data["url"], data["md5"], tmp, data["timeout"], data["retries"])
        size = archive.stat().st_size
        parsed = read_archive(archive)
        archive.unlink()
        (x_tr, y_tr), (x_te, y_te), classes = parsed["train"], parsed["test"], parsed["classes"]
        idx = split_indices(y_tr, y_te, classes, data, params["seed"])
        splits = {"train": (x_tr[idx["train"]], y_tr[idx["train"]]),
                  "val": (x_tr[idx["val"]], y_tr[idx["val"]]),
                  "test": (x_te[idx["test"]], y_te[idx["test"]])}
        del parsed, x_tr, x_te  # (50000, 32, 32, 3) uint8 copies: free them before writing
        info = fetch_info(data, size, splits, classes)
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
