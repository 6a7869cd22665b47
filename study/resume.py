"""Resumable training: a training stage killed at epoch k continues after its last finished epoch.

After each finished epoch k, checkpoints/train_<name>/ (gitignored and not a DVC output, so DVC
neither removes nor commits it) holds
    epoch-<k>/state.npz  the trainer's weights (batch-norm statistics and class centres included),
                         the states of its seed generators (dropout) and its optimizer's variables
                         (step count, momenta), in a fixed order
    epoch-<k>/curves/    DVCLive's curves (plots/train_<name>/plots/metrics) after epoch k
    state.json           {"epoch": k, "epochs": of the run, "fingerprint": ...}
epoch-<k>/ is written whole (a temp folder, then renamed), state.json after it, and the folder of
the epoch before goes last: a kill at any moment leaves a state.json whose epoch folder is
complete. The DVCLive folder is an ordinary DVC output (which keeps
the stage in DVC's run cache), so DVC deletes it before it reruns the stage: the curves of the
finished epochs come back from this backup. The next run of the stage restores them and starts
fit() at that epoch when its fingerprint (the training params, the train and validation arrays,
the initial weights and centres, the code under study/ and stages/) is the same; otherwise the
backup is discarded and training starts over. Data order and augmentation depend only on the seed
and the epoch (study.dataset.make_dataset), so a resumed run ends with the same weights as an
uninterrupted one. A finished training deletes the folder.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from study.files import write_json

CHECKPOINTS = Path("checkpoints")
CODE = ("study", "stages")               # folders whose .py files are in the fingerprint


def backup_dir(name: str) -> Path:
    """checkpoints/train_<name>/: the backup of an unfinished training of model `name`."""
    return CHECKPOINTS / f"train_{name}"


def state_variables(trainer) -> list:
    """The variables a resumed run needs, in a fixed order: the trainer's weights, its seed-generator
    states (dropout masks; Keras keeps them out of `weights`) and its optimizer's variables."""
    weights = trainer.weights
    ids = {id(v) for v in weights}
    seeds = [v for v in trainer.variables if id(v) not in ids and v.path.endswith("seed_generator_state")]
    return [*weights, *seeds, *trainer.optimizer.variables]


def fingerprint(params: dict, trainer, arrays: list[np.ndarray], root: Path = Path(".")) -> str:
    """A hash of what a training depends on: the top-level (training) params and the center_loss
    section, the data arrays, the trainer's initial weights and centres, and the project's code."""
    h = hashlib.sha256()
    keys = {k: v for k, v in params.items() if not isinstance(v, dict)} | {"center_loss": params.get("center_loss")}
    h.update(json.dumps(keys, sort_keys=True, default=str).encode())
    for a in [*arrays, *(np.asarray(w) for w in trainer.weights)]:
        h.update(str((a.shape, a.dtype)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    for folder in CODE:
        for f in sorted((root / folder).glob("*.py")):
            h.update(f.as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def epoch_dir(folder: Path, epoch: int) -> Path:
    """<backup>/epoch-<epoch>/: the state and curves as they were after `epoch` finished epochs."""
    return folder / f"epoch-{epoch}"


def save(folder: Path, trainer, epoch: int, epochs: int, print_: str, curves: Path | None = None) -> None:
    """Write the backup after `epoch` finished epochs (of `epochs`): the trainer's state and, when
    given, a copy of the `curves` folder (DVCLive's metrics/); older epochs go once state.json
    names this one."""
    done, tmp = epoch_dir(folder, epoch), folder / f".epoch-{epoch}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "state.npz", "wb") as f:
        np.savez(f, *[np.asarray(v) for v in state_variables(trainer)])
    if curves is not None and curves.is_dir():
        shutil.copytree(curves, tmp / "curves")
    shutil.rmtree(done, ignore_errors=True)
    tmp.rename(done)
    write_json(folder / "state.json", {"epoch": epoch, "epochs": epochs, "fingerprint": print_})
    for old in folder.glob("epoch-*"):
        if old != done:
            shutil.rmtree(old, ignore_errors=True)


def _read_state(path: Path, variables: list) -> tuple[list[np.ndarray] | None, str | None]:
    """The arrays of a state.npz checked against the variables they restore (count, shape, dtype;
    no pickled objects), or (None, why not)."""
    import zipfile
    try:
        with np.load(path, allow_pickle=False) as f:
            if not isinstance(f, np.lib.npyio.NpzFile):
                return None, "its state is not an .npz archive"
            arrays = [f[f"arr_{i}"] for i in range(len(f.files))]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        return None, f"its state cannot be read: {type(e).__name__}"
    want = [(tuple(v.shape), np.dtype(getattr(v.dtype, "name", v.dtype))) for v in variables]
    if [(a.shape, a.dtype) for a in arrays] != want:
        return None, "its variables do not match this model"
    return arrays, None


def _curves_problem(folder: Path, epoch: int) -> str | None:
    """Why a backup's DVCLive curves (one row per finished epoch before `epoch`) cannot be
    restored, or None."""
    from study.curves import parse_curve
    if not folder.is_dir():
        return "its curves are missing"
    for tsv in folder.rglob("*.tsv"):
        try:
            if any(not 0 <= step < epoch for step in parse_curve(tsv)):
                raise ValueError
        except (OSError, ValueError, UnicodeDecodeError):
            return f"its curve {tsv.relative_to(folder)} is damaged"
    return None


def restore(folder: Path, trainer, epochs: int, print_: str, curves: Path | None = None) -> int:
    """Load a matching backup into `trainer` (compiled), put its curves back into `curves` (when
    given) and return its finished epochs; 0, having discarded any backup, when there is none, it
    belongs to other params, data or code, or any part of it is damaged (one line says why)."""
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        discard(folder)
        return 0
    trainer.optimizer.build(trainer.trainable_variables)
    variables = state_variables(trainer)
    epoch = state.get("epoch") if isinstance(state, dict) else None
    arrays, why = None, None
    if not isinstance(state, dict) or state.get("fingerprint") != print_ or state.get("epochs") != epochs:
        why = "params, data or code changed since it was written"
    elif isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= epochs:
        why = f"its epoch {str(epoch)[:20]!r} is not one of 1..{epochs}"
    elif not (epoch_dir(folder, epoch) / "state.npz").is_file():
        why = "its state is missing"
    else:
        arrays, why = _read_state(epoch_dir(folder, epoch) / "state.npz", variables)
        if not why and curves is not None:
            why = _curves_problem(epoch_dir(folder, epoch) / "curves", epoch)
    if why:
        print(f"{folder}: not resuming ({why}); discarded it, training from epoch 1", flush=True)
        discard(folder)
        return 0
    for v, a in zip(variables, arrays):
        v.assign(a)
    if curves is not None:
        shutil.rmtree(curves, ignore_errors=True)
        shutil.copytree(epoch_dir(folder, epoch) / "curves", curves)
    print(f"{folder}: resuming after epoch {epoch} of {epochs}")
    return epoch


def discard(folder: Path) -> None:
    """Delete a backup."""
    shutil.rmtree(folder, ignore_errors=True)


def backup_callback(folder: Path, epochs: int, print_: str, curves: Path | None = None):
    """A Keras callback that saves the backup (and a copy of the `curves` folder) at the end of
    every epoch; it must come after the callback that logs the epoch's curves."""
    import keras

    class EpochBackup(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            save(folder, self.model, epoch + 1, epochs, print_, curves)
    return EpochBackup()
