"""hash_source: a fingerprint of what data.url holds, so DVC sees when your images change.

Reads params.yaml (data.url, data.md5) and, when data.url is a local folder of class folders,
every file under it. Writes data/source.json: for a folder, an md5 over each file's path and
content (study.sources.fingerprint); for an archive, data.url and data.md5 (the md5 already pins
it; nothing is downloaded). DVC cannot hash a folder named by a param, so this stage always runs
(`always_changed` in dvc.yaml; it takes a second or two) and fetch_data depends on its output:
DVC reruns fetch_data, and what follows, only when the fingerprint changes.
"""
from study import paths
from study.files import write_json
from study.params import load
from study.sources import fingerprint
from study.stage import run_stage


def main(params: dict) -> dict:
    """Write data/source.json; return it."""
    record = fingerprint(params["data"])
    write_json(paths.SOURCE, record)
    return record


if __name__ == "__main__":
    run_stage(lambda: main(load()))
