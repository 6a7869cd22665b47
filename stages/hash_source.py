"""hash_source: a fingerprint of what data.url holds, so DVC sees when your images change.

Reads params.yaml (data.url, data.md5), dvc.lock (the fingerprint fetch_data last ran with) and,
when data.url is a local folder of class folders, every file under it. Writes data/source.json:
for a folder, an md5 over each file's path and content (study.sources.fingerprint); for an
archive, data.url and data.md5 (the md5 already pins it; nothing is downloaded). DVC cannot hash
a folder named by a param, so this stage always runs (`always_changed` in dvc.yaml; a second or
two) and fetch_data depends on its output: DVC reruns fetch_data, and what follows, only when
the fingerprint changes. Only then are the downstream stages' results removed (study.stale).
"""
import hashlib
from pathlib import Path

from study import paths
from study.files import write_json
from study.params import load
from study.stage import run_stage
from study.sources import fingerprint
from study.stale import discard_downstream_results

LOCK = Path("dvc.lock")


def fetch_data_ran_with(lock: Path = LOCK) -> str | None:
    """The md5 of data/source.json that dvc.lock records fetch_data ran with (None when it never ran)."""
    if not lock.is_file():
        return None
    from study.params import parse
    stages = (parse(lock.read_text(), lock) or {}).get("stages") or {}
    deps = (stages.get("fetch_data") or {}).get("deps") or []
    return next((d.get("md5") for d in deps if isinstance(d, dict) and d.get("path") == paths.SOURCE.as_posix()), None)


def main(params: dict) -> dict:
    """Write data/source.json; when it differs from what fetch_data ran with, remove the
    downstream results (they describe other images). Returns the record."""
    record = fingerprint(params["data"])
    write_json(paths.SOURCE, record)
    if hashlib.md5(paths.SOURCE.read_bytes()).hexdigest() != fetch_data_ran_with():
        discard_downstream_results()
    return record


if __name__ == "__main__":
    run_stage(lambda: main(load()), discard=False)
