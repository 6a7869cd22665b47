"""Deletion / insertion curves on a toy model whose answer is known exactly."""
import numpy as np
import pytest

from study import faithfulness as F

H = W = 32
REGION = (slice(12, 20), slice(12, 20))  # the 64 central pixels the toy model looks at


def toy_predict(batch: np.ndarray) -> np.ndarray:
    """(M, 2) probabilities: class 0 = mean brightness of the central 8 x 8 region, class 1 = rest."""
    p = batch[:, REGION[0], REGION[1], :].mean(axis=(1, 2, 3))
    return np.stack([p, 1 - p], axis=1)


def toy_images(n: int) -> np.ndarray:
    """n images, white in the region, dark noise elsewhere (so the region alone sets class 0)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.2, size=(n, H, W, 3)).astype(np.float32)
    x[:, REGION[0], REGION[1], :] = 1.0
    return x


def region_map(n: int) -> np.ndarray:
    """The right explanation: 1 on the region, 0 elsewhere."""
    m = np.zeros((n, H, W), np.float32)
    m[:, REGION[0], REGION[1]] = 1.0
    return m


def test_step_counts_and_auc_of_known_curves():
    np.testing.assert_array_equal(F.step_counts(1024, 4), [0, 256, 512, 768, 1024])
    assert F.auc(np.ones(9)) == pytest.approx(1.0)
    assert F.auc(np.linspace(1, 0, 17)) == pytest.approx(0.5)
    assert F.auc(np.array([1.0, 0.0, 0.0])) == pytest.approx(0.25)


def test_ranking_puts_hottest_pixels_first():
    m = np.zeros((1, 2, 3))
    m[0, 1, 2], m[0, 0, 1] = 0.9, 0.5
    assert list(F.ranking_from_maps(m)[0][:2]) == [5, 1]


def test_deletion_blackens_and_insertion_reveals_ranked_pixels():
    img = toy_images(1)[0]
    order = F.ranking_from_maps(region_map(1))[0]
    dele = F.curve_images(img, order, steps=16, mode="deletion")
    ins = F.curve_images(img, order, steps=16, mode="insertion")
    assert dele.shape == ins.shape == (17, H, W, 3)
    np.testing.assert_array_equal(dele[0], img)                 # nothing removed yet
    assert np.all(dele[1][REGION] == 0) and np.all(dele[-1] == 0)  # 64 px/step: region first
    np.testing.assert_allclose(ins[0], F.blurred(img))           # starts blurred
    np.testing.assert_array_equal(ins[-1], img)                  # ends as the image
    assert np.all(ins[1][REGION] == 1.0)
    with pytest.raises(ValueError, match="mode"):
        F.curve_images(img, order, 4, "erase")


def test_right_ranking_beats_random_on_the_toy_model():
    x = toy_images(6)
    targets = np.zeros(6, int)
    m = F.faithfulness(toy_predict, x, region_map(6), targets, steps=16, seed=0)
    assert m["n_images"] == 6
    # the region goes in the first step: curve [1, 0, 0, ...] -> AUC = (1 + 0) / 2 / 16
    assert m["deletion_auc"] == pytest.approx(1 / 32, abs=1e-6)
    assert m["random_deletion_auc"] == pytest.approx(0.5, abs=0.05)   # linear decay 1 -> 0
    # insertion: blurred region (<1) at x=0, then exactly 1 from the first step on
    assert m["insertion_auc"] > 0.95
    assert m["insertion_auc"] - m["random_insertion_auc"] > 0.2
    assert m["deletion_auc"] < m["random_deletion_auc"] < m["random_insertion_auc"] < m["insertion_auc"]


def test_inverted_ranking_is_worse_than_random():
    x = toy_images(4)
    m = F.faithfulness(toy_predict, x, 1 - region_map(4), np.zeros(4, int), steps=16, seed=0)
    assert m["deletion_auc"] > m["random_deletion_auc"] + 0.3   # region removed last
    assert m["insertion_auc"] < m["random_insertion_auc"]


def test_random_rankings_are_seeded_permutations():
    a, b = F.random_rankings(3, 50, seed=1), F.random_rankings(3, 50, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, F.random_rankings(3, 50, seed=2))
    assert all(sorted(r) == list(range(50)) for r in a)
