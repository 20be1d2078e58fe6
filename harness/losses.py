"""Losses that tasks share: each returns the mean loss and its gradient w.r.t. the predictions."""

from __future__ import annotations

import numpy as np


def mse(predictions: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over every element, and d loss / d predictions."""
    diff = predictions - targets.astype(predictions.dtype, copy=False)
    loss = float(np.mean(np.square(diff, dtype=np.float64)))
    return loss, (2.0 / diff.size) * diff


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy over every position, and d loss / d logits.

    ``logits`` has the classes on its last axis; ``labels`` is an integer array with the shape of
    ``logits`` minus that axis.
    """
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    log_probs = shifted - log_norm
    picked = np.take_along_axis(log_probs, labels[..., None].astype(np.intp), axis=-1)
    count = labels.size
    grad = np.exp(log_probs)
    np.put_along_axis(
        grad, labels[..., None].astype(np.intp),
        np.take_along_axis(grad, labels[..., None].astype(np.intp), axis=-1) - 1.0, axis=-1,
    )
    return float(-picked.astype(np.float64).sum() / count), grad / count


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of positions where the largest logit is the label."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))
