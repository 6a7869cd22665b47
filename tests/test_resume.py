"""study.resume: the backup holds every variable a resumed training needs, and is used only when
it belongs to the same training."""
import json

import numpy as np
import pytest

from study import resume
from study.dataset import make_dataset
from study.train import compile_model, set_seed
from tests.conftest import tiny_params
from tests.synthetic import synthetic_images

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _trainer(kind: str, params: dict):
    """A compiled baseline CNN, or the center-loss trainer around one, built from the seed."""
    from study.center_loss import CenterLossTrainer
    from study.model import build_model
    set_seed(params["seed"])
    model = build_model(True)
    trainer = model if kind == "baseline" else CenterLossTrainer(
        model, np.random.default_rng(0).normal(size=(10, 512)).astype("float32"), "island", 0.01, 0.1, 0.5)
    compile_model(trainer, params, 2)
    return trainer


@pytest.mark.parametrize("kind", ["baseline", "center_loss"])
def test_restore_brings_back_weights_centres_seed_states_and_optimizer(tmp_path, kind):
    params = dict(tiny_params(), optimizer="sgd", lr_schedule="onecycle", learning_rate=0.05, epochs=2)
    x, y = synthetic_images(3, 0)                                  # 30 images: 2 batches of 16
    trained = _trainer(kind, params)
    trained.fit(make_dataset(x, y, 16, shuffle=True, augment="crop_flip", epochs=1), epochs=1, verbose=0)
    folder = tmp_path / "backup"
    resume.save(folder, trained, 1, 2, "print-a")
    saved = [np.asarray(v) for v in resume.state_variables(trained)]
    names = [v.path for v in resume.state_variables(trained)]
    assert any(n.endswith("seed_generator_state") for n in names)             # dropout's random state
    assert int(np.asarray(trained.optimizer.iterations)) == 2
    if kind == "center_loss":
        assert any(n.endswith("centers") for n in names)

    fresh = _trainer(kind, params)
    assert resume.restore(folder, fresh, 2, "print-a") == 1
    for name, a, v in zip(names, saved, resume.state_variables(fresh), strict=True):
        np.testing.assert_array_equal(a, np.asarray(v), err_msg=name)
    assert json.loads((folder / "state.json").read_text())["epoch"] == 1       # kept until training ends


def test_a_backup_of_another_training_is_discarded(tmp_path, capsys):
    params = dict(tiny_params(), epochs=2)
    trainer = _trainer("baseline", params)
    folder = tmp_path / "backup"
    resume.save(folder, trainer, 1, 2, "print-a")
    assert resume.restore(folder, _trainer("baseline", params), 2, "print-b") == 0
    assert not folder.exists()
    assert "not resuming (params, data or code changed since it was written); discarded it, training from epoch 1" in \
        capsys.readouterr().out
    resume.save(folder, trainer, 1, 2, "print-a")
    assert resume.restore(folder, _trainer("baseline", params), 3, "print-a") == 0   # other epoch count
    assert resume.restore(folder, _trainer("baseline", params), 2, "print-a") == 0   # nothing left
    (folder / "state.json").parent.mkdir(parents=True)
    (folder / "state.json").write_text("{truncated")                                  # killed mid-write
    assert resume.restore(folder, _trainer("baseline", params), 2, "print-a") == 0 and not folder.exists()


def test_fingerprint_follows_params_data_weights_and_code(tmp_path):
    params = tiny_params()
    trainer = _trainer("baseline", params)
    x, y = synthetic_images(1, 0)
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "m.py").write_text("A = 1\n")
    base = resume.fingerprint(params, trainer, [x, y], tmp_path)
    assert resume.fingerprint(dict(params), trainer, [x.copy(), y], tmp_path) == base
    assert resume.fingerprint(dict(params, learning_rate=0.002), trainer, [x, y], tmp_path) != base
    assert resume.fingerprint(dict(params, center_loss={**params["center_loss"], "alpha": 0.1}),
                              trainer, [x, y], tmp_path) != base
    assert resume.fingerprint(dict(params, tsne={**params["tsne"], "perplexity": 5}),
                              trainer, [x, y], tmp_path) == base          # not a training param
    x2 = x.copy()
    x2[0, 0, 0, 0] ^= 1
    assert resume.fingerprint(params, trainer, [x2, y], tmp_path) != base
    (tmp_path / "study" / "m.py").write_text("A = 2\n")
    assert resume.fingerprint(params, trainer, [x, y], tmp_path) != base


def test_a_kill_while_the_next_epoch_is_saved_resumes_from_the_last_complete_one(tmp_path, capsys):
    params = dict(tiny_params(), epochs=3)
    folder = tmp_path / "backup"
    first, second = _trainer("baseline", params), _trainer("baseline", params)
    for t in (first, second):
        t.optimizer.build(t.trainable_variables)              # as after a fit: the optimizer's state exists
    second.get_layer("dense_1").bias.assign(np.ones(10, "float32"))
    resume.save(folder, first, 1, 3, "print-a")
    resume.save(folder, second, 2, 3, "print-a")
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-2", "state.json"]      # epoch 1's folder gone
    # killed after epoch 2's folder was renamed into place but before state.json named it
    resume.save(folder, first, 1, 3, "print-a")
    (folder / "epoch-2").mkdir()
    (folder / "epoch-2" / "state.npz").write_bytes(b"half written")
    fresh = _trainer("baseline", params)
    assert resume.restore(folder, fresh, 3, "print-a") == 1
    np.testing.assert_array_equal(np.asarray(fresh.get_layer("dense_1").bias), np.zeros(10))   # epoch 1's
    (folder / "epoch-1" / "state.npz").unlink()                                          # a damaged backup
    assert resume.restore(folder, _trainer("baseline", params), 3, "print-a") == 0 and not folder.exists()
    assert "not resuming (its state is missing); discarded it, training from epoch 1" in capsys.readouterr().out


def _damage_state(folder, how):
    state = folder / "epoch-1" / "state.npz"
    if how == "truncated":
        state.write_bytes(state.read_bytes()[:1000])
    elif how == "empty":
        state.write_bytes(b"")
    elif how in ("object", "strings"):
        with np.load(state) as f:
            arrays = [f[k] for k in f.files]
        arrays[0] = np.array([{"a": 1}], dtype=object) if how == "object" else np.full(arrays[0].shape, "x")
        np.savez(state, *arrays)
    elif how == "float64":
        with np.load(state) as f:
            arrays = [f[k] for k in f.files]
        np.savez(state, *[a.astype(np.float64) if a.dtype == np.float32 else a for a in arrays])


def _damage_json(folder, how):
    state = json.loads((folder / "state.json").read_text())
    value = {"abc": "abc", "99": 99, "-3": -3, "0": 0, "true": True, "1.0": 1.0}.get(how)
    if how == "list":
        (folder / "state.json").write_text("[1, 2]")
        return
    (folder / "state.json").write_text(json.dumps(state | {"epoch": value}))


def _damage_curves(folder, how):
    curves = folder / "epoch-1" / "curves"
    tsv = next(curves.rglob("*.tsv"))
    text = {"emptied": "", "text": "step\taccuracy\n0\tabc\n", "late step": "step\taccuracy\n7\t0.5\n",
            "nan": "step\taccuracy\n0\tnan\n", "ragged": "step\taccuracy\n0\n"}[how]
    tsv.write_text(text)


@pytest.fixture(scope="module")
def built_trainer():
    """One compiled baseline with its optimizer built (as after a fit), shared: restore only assigns."""
    trainer = _trainer("baseline", dict(tiny_params(), epochs=2))
    trainer.optimizer.build(trainer.trainable_variables)
    return trainer


@pytest.mark.parametrize("damage,how,why", [
    (_damage_state, "truncated", "its state cannot be read: BadZipFile"),
    (_damage_state, "empty", "its state cannot be read: "),
    (_damage_state, "object", "its state cannot be read: ValueError"),        # pickled objects are refused
    (_damage_state, "strings", "its variables do not match this model"),
    (_damage_state, "float64", "its variables do not match this model"),
    (_damage_json, "abc", "its epoch 'abc' is not one of 1..2"),
    (_damage_json, "99", "its epoch '99' is not one of 1..2"),
    (_damage_json, "-3", "its epoch '-3' is not one of 1..2"),
    (_damage_json, "0", "its epoch '0' is not one of 1..2"),
    (_damage_json, "true", "its epoch 'True' is not one of 1..2"),
    (_damage_json, "1.0", "its epoch '1.0' is not one of 1..2"),
    (_damage_json, "list", "params, data or code changed since it was written"),
    (_damage_curves, "emptied", "its curve "),
    (_damage_curves, "text", "its curve "),
    (_damage_curves, "late step", "its curve "),
    (_damage_curves, "nan", "its curve "),
    (_damage_curves, "ragged", "its curve "),
])
def test_a_damaged_backup_is_one_line_discarded_and_training_starts_over(tmp_path, capsys, built_trainer,
                                                                          damage, how, why):
    folder, curves = tmp_path / "backup", tmp_path / "live" / "plots" / "metrics"
    (curves / "train").mkdir(parents=True)
    (curves / "train" / "accuracy.tsv").write_text("step\taccuracy\n0\t0.5\n")
    resume.save(folder, built_trainer, 1, 2, "print-a", curves)
    assert resume.restore(folder, built_trainer, 2, "print-a", curves) == 1   # control: the backup is good
    resume.save(folder, built_trainer, 1, 2, "print-a", curves)
    capsys.readouterr()
    damage(folder, how)
    assert resume.restore(folder, built_trainer, 2, "print-a", curves) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and f"not resuming ({why}" in out[0] and out[0].endswith(
        "; discarded it, training from epoch 1"), out
    assert not folder.exists()
