"""Where fetch_data's images come from: the CIFAR-10 python archive, or your own class folders
(a local folder, or a .tar/.tar.gz/.zip archive of one), and the fingerprint by which DVC sees a
folder change (hash_source).
"""
from __future__ import annotations

import hashlib
import json
import tarfile
import zlib
from pathlib import Path

import numpy as np

from study.cifar import PREFIX, read_archive
from study.download import fetch_archive_once, is_remote, local_path
from study.errors import StageError
from study.image_decode import resize
from study.image_folder import MAX_ENTRIES


def local_folder(url: str) -> Path | None:
    """The folder data.url names, or None when it names an archive (a URL or a file)."""
    if is_remote(url):
        return None
    path = local_path(url)
    return path if path.is_dir() else None


def fingerprint(data: dict) -> dict:
    """What data.url holds, cheaply: for a folder, an md5 over every file's path and content
    (and the names of the files it skips); for an archive, its url and md5 (already pinned)."""
    from study.image_folder import list_folder
    folder = local_folder(data["url"])
    if folder is None:
        return {"url": data["url"], "md5": data["md5"]}
    listing = list_folder(folder, "data.url")
    digest = hashlib.md5()
    for rel in sorted(listing.files):
        digest.update(json.dumps([rel, hashlib.md5(listing.files[rel]()).hexdigest()]).encode())
    digest.update(json.dumps(sorted(listing.skipped)).encode())
    return {"url": data["url"], "images": len(listing.files), "skipped": len(listing.skipped),
            "md5": digest.hexdigest()}


def is_cifar_archive(path: Path) -> bool:
    """Whether an archive is to be read as the CIFAR-10 python archive: a tar with a member under
    cifar-10-batches-py/, or no readable .tar/.zip at all (the CIFAR reader then says so). A zip,
    or a tar of other members only, holds class folders."""
    import zipfile
    if zipfile.is_zipfile(path):
        return False
    try:
        with tarfile.open(path) as tf:
            for n, member in enumerate(tf):
                if member.name.lstrip("./").startswith(PREFIX.rstrip("/")):
                    return True
                if n >= MAX_ENTRIES:
                    break
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return True
    return False


def resize_all(x: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, size, size, 3) uint8, as image_folder resizes (Pillow bilinear)."""
    if x.shape[1] == size:
        return x
    return np.stack([resize(img, size) for img in x])


def read_source(data: dict, tmp: Path) -> dict:
    """The images data.url holds, at data.image_size: {'kind', 'classes', 'train': (x, y), 'test':
    (x, y) or None (a single class tree: fetch_data draws it), 'skipped': [file names], 'bytes'}.
    A folder is read in place; an archive is fetched into `tmp` and checked against data.md5."""
    folder, size = local_folder(data["url"]), data["image_size"]
    if folder is not None:
        if data["md5"] is not None:
            raise StageError(f"data.md5: {data['md5']} names an archive, but data.url {data['url']} is a folder; "
                             "allowed: null for a folder")
        from study.image_folder import read_images
        return {"kind": "class folders", **read_images(folder, size, "data.url")}
    if data["md5"] is None:
        raise StageError(f"data.url: {data['url']} is not a folder, and data.md5 is null; allowed: null only "
                         "for a local folder (an archive needs its md5)")
    archive = fetch_archive_once(data["url"], data["md5"], tmp, data["timeout"], data["retries"])
    n_bytes = archive.stat().st_size
    if is_cifar_archive(archive):
        parsed = read_archive(archive)
        archive.unlink()
        for split in ("train", "test"):
            parsed[split] = (resize_all(parsed[split][0], size), parsed[split][1])
        return {"kind": "cifar-10 archive", **parsed, "skipped": [], "bytes": n_bytes}
    from study.image_folder import read_images
    out = read_images(archive, size, f"data.url ({Path(archive).name})")
    archive.unlink()
    return {"kind": "class folders archive", **out, "bytes": n_bytes}  # the archive's size, not its images'

