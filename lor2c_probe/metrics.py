"""Task metrics as GLUE reports them (accuracy, F1, Matthews correlation, Pearson/Spearman)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(pred == gold))


def f1(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> float:
    """Binary F1 of class 1 (GLUE's MRPC convention); macro-F1 over classes when there are more than 2."""
    classes = [1] if num_labels == 2 else list(range(num_labels))
    scores = []
    for c in classes:
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def matthews_corr(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> float:
    """Multiclass MCC (Gorodkin's R_K), which is the usual MCC for two classes; 0 when undefined."""
    c = np.zeros((num_labels, num_labels), dtype=np.float64)
    np.add.at(c, (gold.astype(int), pred.astype(int)), 1)
    t, p, n = c.sum(axis=1), c.sum(axis=0), c.sum()
    cov = np.trace(c) * n - t @ p
    denom = np.sqrt((n**2 - p @ p) * (n**2 - t @ t))
    return float(cov / denom) if denom > 0 else 0.0


def task_metrics(names: tuple[str, ...], logits: np.ndarray, gold: np.ndarray, regression: bool) -> dict[str, float]:
    """Each named metric from the head's outputs (logits: (n, num_labels), or (n, 1) for regression)."""
    if regression:
        pred = logits.reshape(-1)
        same = np.ptp(pred) == 0 or np.ptp(gold) == 0  # correlation undefined for a constant vector
        return {
            "pearson": 0.0 if same else float(stats.pearsonr(pred, gold).statistic),
            "spearman": 0.0 if same else float(stats.spearmanr(pred, gold).statistic),
        }
    num_labels = logits.shape[1]
    pred = logits.argmax(axis=1)
    gold = gold.astype(int)
    funcs = {
        "accuracy": lambda: accuracy(pred, gold),
        "f1": lambda: f1(pred, gold, num_labels),
        "matthews_corr": lambda: matthews_corr(pred, gold, num_labels),
    }
    return {name: funcs[name]() for name in names}
