"""study.resume: the backup holds every variable a resumed training needs, and is used only when
it belongs to the same training."""
import json

import numpy as np
import pytest

from study import resume
from study.train import compile_model, make_dataset, set_seed
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
    assert "not resuming (params, data or code changed since it was written); training from epoch 1" in \
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
    assert "not resuming (its state is missing); training from epoch 1" in capsys.readouterr().out
