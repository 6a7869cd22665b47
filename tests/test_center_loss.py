"""study.center_loss: each term against hand-computed values, the centre update, and the trainer step."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from study import center_loss

# Toy batch: D = 2, K = 3, B = 4 (numbers chosen so every term is easy by hand).
C = np.array([[1., 0.], [0., 2.], [-3., 0.]], np.float32)
F = np.array([[1., 1.], [0., 0.], [-1., 0.], [2., 0.]], np.float32)
Y = np.array([0, 1, 2, 0])


def num(t):
    return float(np.asarray(t))


def test_intra_term_by_hand():
    # ||f_i - c_{y_i}||^2 = 1, 4, 4, 1 -> 0.5 * mean = 0.5 * 2.5
    assert num(center_loss.intra_term(F, Y, C)) == pytest.approx(1.25, rel=1e-6)


def test_island_term_by_hand():
    # cos(c0,c1) = 0, cos(c0,c2) = -1, cos(c1,c2) = 0; (cos + 1) over 6 ordered pairs = 1+0+1 twice
    assert num(center_loss.island_term(C)) == pytest.approx(4 / 6, rel=1e-6)


def test_island_term_bounds_and_zero_centre():
    same = np.array([[1., 1.], [2., 2.], [3., 3.]], np.float32)   # all cos = 1 -> 2
    assert num(center_loss.island_term(same)) == pytest.approx(2.0, rel=1e-6)
    opposite = np.array([[1., 0.], [-1., 0.]], np.float32)         # cos = -1 -> 0
    assert num(center_loss.island_term(opposite)) == pytest.approx(0.0, abs=1e-7)
    with_zero = np.array([[0., 0.], [1., 0.], [0., 1.]], np.float32)  # zero centre: cos 0, finite
    assert num(center_loss.island_term(with_zero)) == pytest.approx(1.0, rel=1e-6)


def test_contrastive_term_by_hand():
    # squared distances to (c0, c1, c2): f0 (1, 2, 17) y=0; f1 (1, 4, 9) y=1;
    # f2 (4, 5, 4) y=2; f3 (1, 8, 25) y=0. Per sample 0.5 * own / (others + 1):
    per_sample = [0.5 * 1 / 20, 0.5 * 4 / 11, 0.5 * 4 / 10, 0.5 * 1 / 34]
    assert num(center_loss.contrastive_term(F, Y, C)) == pytest.approx(np.mean(per_sample), rel=1e-6)


def test_inter_term_per_variant():
    assert num(center_loss.inter_term("center", F, Y, C)) == 0.0
    assert num(center_loss.inter_term("island", F, Y, C)) == pytest.approx(4 / 6, rel=1e-6)
    assert num(center_loss.inter_term("contrastive", F, Y, C)) == pytest.approx(
        num(center_loss.contrastive_term(F, Y, C)), rel=1e-6)


def test_distances_by_hand():
    assert num(center_loss.intra_distance(F, Y, C)) == pytest.approx((1 + 2 + 2 + 1) / 4, rel=1e-6)
    expected = (math.sqrt(5) + 4 + math.sqrt(13)) / 3
    assert num(center_loss.inter_distance(C)) == pytest.approx(expected, rel=1e-6)


def test_center_update_one_step_by_hand():
    c = np.vstack([C, [[5., 5.]]]).astype(np.float32)  # a 4th class with no sample in the batch
    # delta_0 = ((c0-f0) + (c0-f3)) / 3 = ([0,-1] + [-1,0]) / 3; delta_1 = [0,2] / 2; delta_2 = [-2,0] / 2
    expected_delta = np.array([[-1 / 3, -1 / 3], [0, 1], [-1, 0], [0, 0]], np.float32)
    np.testing.assert_allclose(np.asarray(center_loss.center_delta(F, Y, c)), expected_delta, rtol=1e-6)
    new = np.asarray(center_loss.center_update(c, F, Y, alpha=0.5))
    expected = np.array([[1 + 1 / 6, 1 / 6], [0, 1.5], [-2.5, 0], [5, 5]], np.float32)
    np.testing.assert_allclose(new, expected, rtol=1e-6)


def test_center_update_adds_inter_gradient():
    g = np.full_like(C, 0.2)
    new = np.asarray(center_loss.center_update(C, F, Y, alpha=0.5, inter_grad=g))
    plain = np.asarray(center_loss.center_update(C, F, Y, alpha=0.5))
    np.testing.assert_allclose(new, plain - 0.5 * 0.2, rtol=1e-6)


def test_alpha_zero_keeps_centres():
    new = np.asarray(center_loss.center_update(C, F, Y, alpha=0.0, inter_grad=np.ones_like(C)))
    np.testing.assert_array_equal(new, C)


# ---- the trainer on a tiny deterministic network (no dropout, so features are reproducible)

def tiny_net(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense"),
                             keras.layers.Dense(3, activation="softmax", name="dense_1")])


def compiled_trainer(variant, alpha, lam=0.5, mu=0.3, lr=0.0):
    net = tiny_net()
    trainer = center_loss.CenterLossTrainer(net, C, variant, lam, mu, alpha)
    trainer.compile(optimizer=keras.optimizers.SGD(lr), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    return net, trainer


X = np.array([[1., 0., 0.], [0., 1., 0.], [0., 0., 1.], [1., 1., 1.]], np.float32)


def dense_features(net):
    return np.asarray(keras.Model(net.inputs, net.get_layer("dense").output)([X]))


def test_trainer_center_step_matches_rule():
    net, trainer = compiled_trainer("center", alpha=0.5)  # lr 0: the net does not move
    f = dense_features(net)
    trainer.train_on_batch(X, Y)
    np.testing.assert_allclose(np.asarray(trainer.centers),
                               np.asarray(center_loss.center_update(C, f, Y, 0.5)), rtol=1e-5, atol=1e-6)


def test_trainer_island_step_adds_mu_times_gradient():
    net, trainer = compiled_trainer("island", alpha=0.5, mu=0.3)
    f = dense_features(net)
    c = tf.constant(C)
    with tf.GradientTape() as tape:
        tape.watch(c)
        island = center_loss.island_term(c)
    g = 0.3 * tape.gradient(island, c).numpy()
    trainer.train_on_batch(X, Y)
    expected = np.asarray(center_loss.center_update(C, f, Y, 0.5, inter_grad=g))
    np.testing.assert_allclose(np.asarray(trainer.centers), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_trainer_alpha_zero_fit_keeps_centres_and_logs_terms():
    net, trainer = compiled_trainer("contrastive", alpha=0.0, lam=0.5, mu=0.3, lr=0.1)
    w0 = net.get_layer("dense").get_weights()[0].copy()
    hist = trainer.fit(X, Y, batch_size=2, epochs=2, validation_data=(X, Y), verbose=0).history
    np.testing.assert_array_equal(np.asarray(trainer.centers), C)
    assert not np.allclose(net.get_layer("dense").get_weights()[0], w0)  # the shared net trained
    expected = {"loss", "ce", "intra", "inter", "accuracy", "intra_dist", "inter_dist"}
    assert expected | {"val_" + k for k in expected} <= set(hist)
    for prefix in ("", "val_"):
        total = np.array(hist[prefix + "ce"]) + 0.5 * np.array(hist[prefix + "intra"]) \
            + 0.3 * np.array(hist[prefix + "inter"])
        np.testing.assert_allclose(hist[prefix + "loss"], total, rtol=1e-5)
    # centres fixed: the logged inter-centre distance is C's
    assert hist["inter_dist"][-1] == pytest.approx((math.sqrt(5) + 4 + math.sqrt(13)) / 3, rel=1e-5)


def test_trainer_rejects_unknown_variant():
    with pytest.raises(ValueError, match="allowed: center, island, contrastive"):
        center_loss.CenterLossTrainer(tiny_net(), C, "triplet", 0.1, 0.1, 0.5)
