"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over splits."""
import numpy as np


def softmax(logits):
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def inception_score(probs, num_splits=10):
    """(mean, std) over `num_splits` equal contiguous splits of [N, C] class probabilities."""
    p = np.asarray(probs, np.float64)
    n = len(p)
    if n < num_splits:
        raise ValueError(f"IS needs at least {num_splits} samples for {num_splits} splits, got {n}")
    scores = []
    for k in range(num_splits):
        part = p[k * n // num_splits:(k + 1) * n // num_splits]
        marginal = np.mean(part, axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(np.mean(np.sum(kl, axis=1))))
    return float(np.mean(scores)), float(np.std(scores))
