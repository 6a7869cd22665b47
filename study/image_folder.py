"""Your own images: a folder (or a .tar/.tar.gz/.zip archive) of class folders, as Keras's
`image_dataset_from_directory` and torchvision's `ImageFolder` read them.

Layouts: `train/<class>/*` and `test/<class>/*`, or a single `<class>/*` tree whose test split
fetch_data draws (data.test_size). Class names are the folder names, sorted; images are .jpg,
.jpeg or .png files anywhere under a class folder, decoded by Pillow, converted to RGB (grayscale,
palette, RGBA, CMYK and 16-bit images are converted, not refused) and resized to
data.image_size x data.image_size (bilinear, Pillow's antialiased resampling). Other files are
skipped and counted. Every problem is a one-line StageError naming the file or folder.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from study.data import MAX_CLASSES, NAME_RULE, first_bad_name
from study.errors import StageError
from study.image_decode import decode

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_FILE_BYTES = 64 << 20      # one image file (an archive member is unpacked into memory)
MAX_ENTRIES = 2_000_000        # files and folders of one source
SPLIT_DIRS = ("train", "test")


class Listing:
    """What a source holds: {split or '': {class: [(name, reader)]}} and the skipped files' names."""

    def __init__(self, where: str):
        self.where = where
        self.files: dict[str, object] = {}   # relative path (posix) -> reader, filled by the walkers
        self.dirs: set[str] = set()          # relative paths of the folders (class folders with no image too)
        self.skipped: list[str] = []

    def add(self, rel: str, read, size: int) -> None:
        """A file at relative path `rel` (posix) of `size` bytes; `read()` returns its bytes."""
        if len(self.files) + len(self.skipped) + len(self.dirs) >= MAX_ENTRIES:
            raise StageError(f"{self.where}: more than {MAX_ENTRIES:,} files and folders; allowed: up to that many")
        if size > MAX_FILE_BYTES and rel.lower().endswith(IMAGE_SUFFIXES):
            raise StageError(f"{rel}: {size:,} bytes; allowed: image files up to {MAX_FILE_BYTES >> 20} MiB")
        if Path(rel).name.startswith(".") or not rel.lower().endswith(IMAGE_SUFFIXES):
            self.skipped.append(rel)
        else:
            self.files[rel] = read


def _inside(parts: tuple[str, ...]) -> bool:
    """Whether a relative path's parts stay inside its root (no '..' above it)."""
    depth = 0
    for p in parts:
        depth += -1 if p == ".." else (0 if p in ("", ".") else 1)
        if depth < 0:
            return False
    return True


def list_folder(root: Path, where: str) -> Listing:
    """Every file under `root` (symlinks followed only while they stay inside it; one that
    leads outside is refused)."""
    listing, real_root = Listing(where), os.path.realpath(root)
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if os.path.commonpath([real, real_root]) != real_root:
            raise StageError(f"{where}: {Path(dirpath).relative_to(root)} is a link leading outside the folder; "
                             "allowed: files and links inside it")
        if real in seen:  # a link back to a folder already walked
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        listing.dirs.update((Path(dirpath) / d).relative_to(root).as_posix() for d in dirnames)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            target = os.path.realpath(path)
            if os.path.commonpath([target, real_root]) != real_root:
                raise StageError(f"{where}: {rel} is a link leading outside the folder; allowed: files and links inside it")
            listing.add(rel, path.read_bytes, path.stat().st_size)
    return listing


def list_archive(path: Path, where: str) -> Listing:
    """Every regular file of a .tar(.gz) or .zip archive; a member whose name or link target
    leads outside the archive (absolute, '..') is refused."""
    listing = Listing(where)
    if zipfile.is_zipfile(path):
        zf = zipfile.ZipFile(path)
        listing.dirs.update(_clean(m.filename) for m in zf.infolist() if m.is_dir())
        members = [(m.filename, None, (lambda m=m: zf.read(m)), m.file_size) for m in zf.infolist() if not m.is_dir()]
    else:
        try:
            tf = tarfile.open(path)
        except tarfile.TarError as e:
            raise StageError(f"{where}: not a readable .tar, .tar.gz or .zip archive ({e})") from None
        members = []
        for m in tf.getmembers():
            if m.isdir():
                listing.dirs.add(_clean(m.name))
                continue
            if not (m.isfile() or m.issym() or m.islnk()):
                raise StageError(f"{where}: member {m.name} is not a file; allowed: files, folders and links inside it")
            target = None
            if m.issym():
                target = str(PurePosixPath(m.name).parent / m.linkname)
            elif m.islnk():
                target = m.linkname
            members.append((m.name, target, (lambda m=m: _tar_bytes(tf, m, where)), m.size))
            if len(members) > MAX_ENTRIES:
                raise StageError(f"{where}: more than {MAX_ENTRIES:,} members; allowed: up to that many")
    for name, target, read, size in members:
        for p in (name, target):
            if p is not None and (p.startswith("/") or not _inside(PurePosixPath(p).parts)):
                raise StageError(f"{where}: member {name} leads outside the archive; allowed: relative paths inside it")
        listing.add(_clean(name), read, size)
    return listing


def _clean(name: str) -> str:
    """An archive member's name without './' parts or a trailing '/'."""
    return str(PurePosixPath(*[q for q in PurePosixPath(name).parts if q != "."] or ["."]))


def _tar_bytes(tf: tarfile.TarFile, member: tarfile.TarInfo, where: str) -> bytes:
    """A tar member's bytes (a link: its target's)."""
    try:
        f = tf.extractfile(member)
    except KeyError:
        f = None
    if f is None:
        raise StageError(f"{where}: member {member.name} links to {member.linkname}, which the archive lacks")
    return f.read()


def _strip_common_folder(files: dict, dirs: set[str]) -> tuple[dict, set[str]]:
    """Paths without a top folder they all share when it is neither a split nor the only level
    (an archive of `mydata/train/...` reads as `train/...`)."""
    tops = {rel.split("/", 1)[0] for rel in files}
    if len(tops) == 1 and all(rel.count("/") >= 2 for rel in files) and next(iter(tops)) not in SPLIT_DIRS:
        top = next(iter(tops)) + "/"
        return ({rel[len(top):]: r for rel, r in files.items()},
                {d[len(top):] for d in dirs if d.startswith(top)})
    return files, dirs


def _class_dirs(dirs: set[str], split: str) -> set[str]:
    """The class folders of a split ('' = the root) among the relative folder paths."""
    prefix = f"{split}/" if split else ""
    return {d[len(prefix):] for d in dirs if d.startswith(prefix) and "/" not in d[len(prefix):] and d[len(prefix):]}


def group(listing: Listing) -> dict[str, dict[str, list[tuple[str, object]]]]:
    """{'train': {class: files}, 'test': {...}} for the split layout, {'': {class: files}} for a
    single class tree; refuses an empty source, a split folder without the other, fewer than 2
    classes, a class with no images and a class that one split lacks."""
    files, dirs = _strip_common_folder(listing.files, listing.dirs)
    where = listing.where
    if not files:
        raise StageError(f"{where}: holds no .jpg, .jpeg or .png images; expected class folders "
                         "(<class>/*.png) or train/<class>/* and test/<class>/*")
    tops = {rel.split("/", 1)[0] for rel in files if "/" in rel}
    split_layout = bool(tops & set(SPLIT_DIRS))
    out: dict[str, dict] = {}
    for rel, read in sorted(files.items()):
        parts = rel.split("/")
        if split_layout and parts[0] not in SPLIT_DIRS:
            listing.skipped.append(rel)
            continue
        split, rest = (parts[0], parts[1:]) if split_layout else ("", parts)
        if len(rest) < 2:  # an image beside the class folders, not in one
            listing.skipped.append(rel)
            continue
        out.setdefault(split, {}).setdefault(rest[0], []).append((rel, read))
    if split_layout and set(out) != set(SPLIT_DIRS):
        have = next(iter(out), "train")
        missing = ({"train", "test"} - {have}).pop()
        raise StageError(f"{where}: has {have}/ but no images under {missing}/; expected train/<class>/* and "
                         "test/<class>/*, or one <class>/* tree (its test split drawn by data.test_size)")
    for split, classes in out.items():
        empty = sorted(_class_dirs(dirs, split) - set(classes))
        if empty:
            raise StageError(f"{where}: class folder {split + '/' if split else ''}{empty[0]} holds no .jpg, .jpeg or "
                             ".png image; allowed: class folders with at least one image (remove it, or add images)")
        _check_classes(f"{where}: {split}/" if split else f"{where}:", sorted(classes))
    if split_layout and sorted(out["train"]) != sorted(out["test"]):
        a, b = set(out["train"]), set(out["test"])
        name, there, not_there = (sorted(a - b)[0], "train", "test") if a - b else (sorted(b - a)[0], "test", "train")
        raise StageError(f"{where}: class {name!r} is in {there}/ but not in {not_there}/; "
                         "every class needs images in both")
    return out


def _check_classes(where: str, names: list[str]) -> None:
    """At least 2 and at most MAX_CLASSES class folders, each named as CLASS_NAME allows."""
    if not 2 <= len(names) <= MAX_CLASSES:
        raise StageError(f"{where} {len(names)} class folder(s) with images ({', '.join(names)[:80]}); "
                         f"allowed: 2..{MAX_CLASSES} classes")
    bad = first_bad_name(names)
    if bad is not None:
        raise StageError(f"{where} class folder {bad[:60]!r} is not an allowed class name; allowed: {NAME_RULE}")


def read_split(classes: dict[str, list], names: list[str], size: int) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """(x uint8 (N, size, size, 3), y uint8 (N,), file names, bytes read) of one split's class
    folders, labels = the index of the class in `names`, in class then file order."""
    n = sum(len(f) for f in classes.values())
    x = np.empty((n, size, size, 3), np.uint8)
    y = np.empty(n, np.uint8)
    files, n_bytes = [], 0
    for label, name in enumerate(names):
        for rel, read in classes.get(name, []):
            raw = read()
            n_bytes += len(raw)
            x[len(files)] = decode(raw, rel, size)
            y[len(files)] = label
            files.append(rel)
    return x, y, files, n_bytes


def check_no_duplicates(where: str, splits: list[tuple[np.ndarray, list[str]]]) -> None:
    """Refuse an image whose pixels (after resizing) appear twice across `splits` [(x, files)]:
    a test image also in training would make test accuracy a memory test. Names both files."""
    seen: dict[bytes, tuple[int, str]] = {}
    for i, (x, files) in enumerate(splits):
        for img, rel in zip(x, files):
            first = seen.setdefault(hashlib.blake2b(img.tobytes(), digest_size=16).digest(), (i, rel))
            if first[0] != i or (len(splits) == 1 and first[1] != rel):
                raise StageError(f"{where}: {rel} repeats {first[1]} (the same pixels at this size); every image "
                                 "must appear once, or the test split would hold training images")


def read_images(source: Path, size: int, where: str) -> dict:
    """A folder or archive of class folders -> {'classes', 'train': (x, y), 'test': (x, y) or
    None (single tree), 'skipped': [names], 'bytes': total size of the images read}."""
    listing = list_folder(source, where) if source.is_dir() else list_archive(source, where)
    grouped = group(listing)
    names = sorted(grouped.get("train", grouped.get("")))
    out = {"classes": names, "skipped": listing.skipped, "test": None, "bytes": 0}
    parts = []
    for split in ("train", "test") if "train" in grouped else ("",):
        x, y, files, n_bytes = read_split(grouped[split], names, size)
        out["train" if split in ("train", "") else "test"] = (x, y)
        out["bytes"] += n_bytes
        parts.append((x, files))
    check_no_duplicates(where, parts)
    return out
