"""study.tsne: openTSNE embeddings are finite and seeded; metrics are right on known cases."""
import numpy as np
import pytest
from sklearn.datasets import make_blobs

from study.tsne import embed, embed_with_params, knn_accuracy, layer_metrics, silhouette, trustworthiness

N_ITER, EE_ITER, PERPLEXITY = 100, 50, 15
N_ITER_3D, EE_ITER_3D = 60, 20   # the 3D embedding's own, shorter schedule
SCHEDULE_3D = {"early_exaggeration_iter_3d": EE_ITER_3D, "n_iter_3d": N_ITER_3D}


@pytest.fixture(scope="module")
def blobs():
    """200 points in 20 dims, 10 well-separated Gaussian classes (labels 0..9, 20 each)."""
    x, y = make_blobs(n_samples=[20] * 10, n_features=20, cluster_std=1.0, center_box=(-40, 40), random_state=0)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def embeddings(blobs):
    """{(n_components, seed): embedding} of the blobs."""
    x, _ = blobs
    return {(d, s): emb for s in (0, 1) for d, emb in embed(x, PERPLEXITY, N_ITER, s, EE_ITER, **SCHEDULE_3D)[0].items()}


def test_embeddings_have_shape_are_finite_and_seeded(blobs, embeddings):
    x, _ = blobs
    again, seconds = embed(x, PERPLEXITY, N_ITER, 0, EE_ITER, **SCHEDULE_3D)
    assert set(seconds) == {"affinities", "2d", "3d"} and all(v >= 0 for v in seconds.values())
    for d in (2, 3):
        e0 = embeddings[(d, 0)]
        assert e0.shape == (len(x), d) and e0.dtype == np.float32 and np.isfinite(e0).all()
        assert np.array_equal(e0, again[d])                                    # same seed, same result
        assert np.abs(e0 - embeddings[(d, 1)]).max() > 1e-3                  # different seed, different


def test_2d_and_3d_share_one_affinity_and_one_pca(blobs, monkeypatch):
    from openTSNE import affinity, initialization, tsne
    calls = []  # openTSNE's TSNE.fit would build its own MultiscaleMixture and PCA when not given them
    for module, name in ((affinity, "MultiscaleMixture"), (tsne, "MultiscaleMixture"), (initialization, "pca")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name, **kw: calls.append(
            (_name, kw.get("n_components"))) or _real(*a, **kw))
    embs, _ = embed(blobs[0], PERPLEXITY, N_ITER, 0, EE_ITER, **SCHEDULE_3D)
    assert calls == [("MultiscaleMixture", None), ("pca", 3)]                 # once each, for both embeddings
    assert embs[2].shape == (200, 2) and embs[3].shape == (200, 3)


def test_2d_and_3d_run_their_own_schedules_from_the_pca_start(blobs, monkeypatch):
    from openTSNE import tsne
    runs = []  # (n_components, early_exaggeration_iter, n_iter, spread of each start axis)
    real_fit = tsne.TSNE.fit

    def fit(self, *a, initialization=None, **kw):
        runs.append((self.n_components, self.early_exaggeration_iter, self.n_iter, initialization.std(axis=0)))
        return real_fit(self, *a, initialization=initialization, **kw)
    monkeypatch.setattr(tsne.TSNE, "fit", fit)
    embed(blobs[0], PERPLEXITY, N_ITER, 0, EE_ITER, **SCHEDULE_3D)
    assert [r[:3] for r in runs] == [(2, EE_ITER, N_ITER), (3, EE_ITER_3D, N_ITER_3D)]
    start2, start3 = runs[0][3], runs[1][3]
    assert np.allclose(start3[:2], start2) and 0 < start3[2] <= start3[0]   # the same PCA, one more component


def test_embed_with_params_maps_each_tsne_key(blobs, embeddings):
    t = {"perplexity": PERPLEXITY, "n_iter": N_ITER, "early_exaggeration_iter": EE_ITER, **SCHEDULE_3D,
         "knn_k": 5, "trust_samples": 50}
    embs, _ = embed_with_params(blobs[0], t, 1)
    assert np.array_equal(embs[2], embeddings[2, 1]) and np.array_equal(embs[3], embeddings[3, 1])
    embs, _ = embed_with_params(blobs[0], t | {"n_iter_3d": N_ITER_3D + 40}, 1)   # the 3D count reaches 3D only
    assert np.array_equal(embs[2], embeddings[2, 1]) and not np.array_equal(embs[3], embeddings[3, 1])


def test_3d_embedding_uses_all_three_axes(embeddings):
    # a 3D start lifted from a finished 2D layout stayed flat (third axis ~0.2 of the first);
    # from the PCA start every axis carries a comparable share of the layout
    spread = embeddings[(3, 0)].std(axis=0)
    assert spread.min() / spread.max() > 0.5


def test_shared_work_embeds_as_well_as_separate_fits(blobs, embeddings):
    from openTSNE import TSNE
    x, y = blobs
    for d, method in ((2, "fft"), (3, "bh")):
        alone = np.asarray(TSNE(n_components=d, perplexity=PERPLEXITY, n_iter=N_ITER, early_exaggeration_iter=EE_ITER,
                                negative_gradient_method=method, random_state=0).fit(x.astype(np.float64)))
        assert knn_accuracy(embeddings[(d, 0)], y, 5, 0) >= knn_accuracy(alone, y, 5, 0) - 0.02


def test_separated_blobs_score_near_one(blobs, embeddings):
    x, y = blobs
    m = layer_metrics(x, embeddings[(2, 0)], embeddings[(3, 0)], y, k=5, trust_samples=100, seed=0)
    assert m["knn_accuracy_2d"] > 0.95 and m["knn_accuracy_3d"] > 0.95 and m["knn_accuracy_features"] > 0.95
    assert m["trustworthiness_2d"] > 0.95
    assert m["silhouette_2d"] > 0.5 and m["silhouette_features"] > 0.5
    assert set(m) == {"knn_accuracy_2d", "knn_accuracy_3d", "knn_accuracy_features",
                      "trustworthiness_2d", "silhouette_2d", "silhouette_features"}


def test_metrics_fall_to_chance_without_structure(blobs):
    x, y = blobs
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(y)                          # labels unrelated to position
    assert knn_accuracy(x, shuffled, 5, seed=0) < 0.3      # chance is 0.1
    assert silhouette(x, shuffled) < 0.05
    noise = rng.normal(size=(len(x), 2))                   # an embedding that ignores x
    assert trustworthiness(x, noise, y, 5, 100, seed=0) < 0.7


def test_knn_accuracy_handles_classes_smaller_than_five_folds():
    # 3 points per class: 5-fold stratified CV is impossible, so 3 folds are used
    x = np.repeat(np.arange(4, dtype=float)[:, None] * 10, 3, axis=0) + np.tile([[0.0], [0.1], [0.2]], (4, 1))
    y = np.repeat(np.arange(4), 3)
    assert knn_accuracy(x, y, 1, seed=0) == 1.0
    y_mixed = np.tile(np.arange(3), 4)     # every cluster holds one point of classes 0, 1, 2
    assert knn_accuracy(x, y_mixed, 1, seed=0) == 0.0


def test_trustworthiness_uses_a_seeded_subsample(blobs, embeddings):
    x, y = blobs
    e = embeddings[(2, 0)]
    a, b = trustworthiness(x, e, y, 5, 60, seed=0), trustworthiness(x, e, y, 5, 60, seed=0)
    assert a == b and 0.9 < a <= 1.0
