"""Fit the LOMO part's projection of a re-ID head: LDA on identity-labelled descriptors.

Training-time only: the fitted mean and projection are stored in the head
(``EmbeddingHead.lomo_mean`` / ``lomo_proj``) and applied by ``add_lomo`` at inference.
"""
from __future__ import annotations

import numpy as np


def fit_lomo_projection(descriptors: np.ndarray, labels: np.ndarray, dim: int = 256,
                          pca_dim: int = 512, ridge: float = 1e-3,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (D,), projection (D, dim))`` learned from identity-labelled descriptors.

    Linear discriminant analysis in the leading ``pca_dim`` principal components: whiten the
    within-identity scatter (plus ``ridge`` times its mean eigenvalue, for stability), then
    keep the ``dim`` directions along which identities' means differ most. Colour changes of
    one person between cameras (light, white balance) are down-weighted; colour differences
    between people are kept. ``dim`` must be below the number of identities."""
    from sklearn.utils.extmath import randomized_svd

    x = np.asarray(descriptors, np.float32)
    labels = np.asarray(labels)
    classes, y = np.unique(labels, return_inverse=True)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError("descriptors must be (N, D) with one label per row")
    if not 0 < dim < len(classes):
        raise ValueError(f"dim must be between 1 and the number of identities - 1 "
                         f"({len(classes) - 1}), got {dim}")
    pca_dim = min(pca_dim, len(x) - 1, x.shape[1])
    if pca_dim < dim:
        raise ValueError(f"need at least {dim + 1} training descriptors for a {dim}-d projection")
    mean = x.mean(0)
    x = x - mean
    _, _, vt = randomized_svd(x, pca_dim, n_oversamples=64, n_iter=3, random_state=seed)
    pca = vt.T.astype(np.float64)                         # (D, pca_dim)
    z = x @ pca
    counts = np.bincount(y).astype(np.float64)
    means = np.zeros((len(classes), pca_dim))
    np.add.at(means, y, z)
    means /= counts[:, None]
    within = z - means[y]
    sw = within.T @ within / len(z)
    sw += ridge * np.trace(sw) / pca_dim * np.eye(pca_dim)
    ev, vecs = np.linalg.eigh(sw)
    whiten = vecs / np.sqrt(ev)
    between = (means - means.mean(0)) @ whiten
    _, _, vb = np.linalg.svd(between, full_matrices=False)
    proj = pca @ whiten @ vb[:dim].T
    return mean.astype(np.float32), proj.astype(np.float32)
