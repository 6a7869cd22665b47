"""Fixtures: the real params.yaml shrunk to tiny settings, in a temp working directory."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.synthetic import write_splits

REPO = Path(__file__).resolve().parents[1]


def tiny_params() -> dict:
    """The repository's params.yaml with settings small enough for a test (same keys)."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p = copy.deepcopy(p)
    p.update(epochs=1, batch_size=32)
    p["data"].update(val_size=50, train_size=200, test_size=100)
    p["kmeans"].update(n_init=2)
    p["activations"].update(n_samples=60, pca_dims=8, batch_size=32, surface_images=2)
    p["tsne"].update(perplexity=10, n_iter=100, knn_k=5, trust_samples=50)
    p["gradcam"].update(images_per_class=1, auc_steps=8)
    return p


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """chdir into a temp dir holding tiny params.yaml and synthetic data/ splits; yields params."""
    params = tiny_params()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_splits(tmp_path)
    monkeypatch.chdir(tmp_path)
    return params
