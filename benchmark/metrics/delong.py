"""DeLong's test for AUROCs: the variance of one AUROC and the paired comparison of two (numpy/scipy only).

DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more correlated receiver
operating characteristic curves: a nonparametric approach", Biometrics 44:837-845; the fast midrank
algorithm of Sun & Xu (2014), "Fast implementation of DeLong's algorithm for comparing the areas under
correlated receiver operating characteristic curves", IEEE Signal Processing Letters 21:1389-1393.

Notation: m positives X_i, n negatives Y_j, psi(x, y) = 1 if x > y, 1/2 if x == y, 0 otherwise. The
structural components are V10_i = mean_j psi(X_i, Y_j) and V01_j = mean_i psi(X_i, Y_j); the AUROC is the
mean of either, and its variance is S10 / m + S01 / n with S10, S01 the sample (co)variances (ddof=1) of
the components. With midranks (ties share the average rank, which is what gives psi = 1/2 on ties):
V10_i = (Tz_i - Tx_i) / n and V01_j = 1 - (Tz_j - Ty_j) / m, where Tz is the midrank among all cases, Tx
among the positives and Ty among the negatives - O(N log N) instead of O(m n).

The report compares #1 with every other row by `delong_ovr`, on each row's seeds.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata


@dataclass(frozen=True)
class DeLongResult:
    """A paired comparison of two AUROCs on the same cases: difference = auc_a - auc_b.

    `z` is difference / standard_error and `p_value` is two-sided under the normal approximation;
    (ci_low, ci_high) is the Wald interval of the difference at `level`. A zero standard error (e.g.
    identical scores) gives z = 0 and p = 1 when the difference is 0, z = +-inf and p = 0 otherwise.
    """

    auc_a: float
    auc_b: float
    difference: float
    standard_error: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    level: float


def _positive_mask(y_true: np.ndarray) -> np.ndarray:
    """The binary labels as a boolean mask of positives; at least two cases of each class are required."""
    y = np.asarray(y_true).ravel()
    values = np.unique(y)
    if not set(values.tolist()) <= {0, 1}:
        raise ValueError(f"binary labels must be 0/1 (or bool); got values {values.tolist()[:10]}")
    positive = y.astype(bool)
    _require_both(positive, "the positive class")
    return positive


def _require_both(positive: np.ndarray, what: str) -> None:
    m = int(positive.sum())
    n = positive.size - m
    if m < 2 or n < 2:
        raise ValueError(
            f"DeLong's variance needs at least 2 positives and 2 negatives for {what}; got {m} and {n}"
        )


def _score_matrix(scores: np.ndarray, n_cases: int) -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    if s.ndim == 1:
        s = s[None, :]
    if s.ndim != 2 or s.shape[1] != n_cases:
        raise ValueError(f"scores must have one value per case ({n_cases}); got shape {np.shape(scores)}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return s


def _structural_components(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """V10 (s, m) and V01 (s, n) for each of s score sets (rows of `scores`), by midranks (Sun & Xu)."""
    m = int(positive.sum())
    n = positive.size - m
    tz = rankdata(scores, axis=1)  # midranks among all cases
    tx = rankdata(scores[:, positive], axis=1)
    ty = rankdata(scores[:, ~positive], axis=1)
    v10 = (tz[:, positive] - tx) / n
    v01 = 1.0 - (tz[:, ~positive] - ty) / m
    return v10, v01


def _compare(difference: float, variance: float, auc_a: float, auc_b: float, level: float) -> DeLongResult:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1; got {level}")
    se = float(np.sqrt(max(variance, 0.0)))  # rounding can leave a tiny negative variance
    z = difference / se if se > 0.0 else 0.0
    if se == 0.0 and difference != 0.0:  # no spread but a difference: certain
        z = float(np.copysign(np.inf, difference))
    p_value = float(min(1.0, 2.0 * norm.sf(abs(z))))
    half = float(norm.ppf(0.5 + level / 2.0)) * se
    return DeLongResult(
        auc_a=float(auc_a),
        auc_b=float(auc_b),
        difference=float(difference),
        standard_error=se,
        z=float(z),
        p_value=p_value,
        ci_low=float(difference - half),
        ci_high=float(difference + half),
        level=float(level),
    )


def delong_roc_variance(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(AUROC, DeLong variance of the AUROC) for binary labels (1 = positive) and scores (higher = positive).

    Ties count one half, so the AUROC equals sklearn's roc_auc_score; the variance is S10 / m + S01 / n.
    """
    positive = _positive_mask(y_true)
    v10, v01 = _structural_components(positive, _score_matrix(scores, positive.size))
    auc = float(v10[0].mean())
    variance = float(v10[0].var(ddof=1) / v10.shape[1] + v01[0].var(ddof=1) / v01.shape[1])
    return auc, variance


def delong_paired_test(
    y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, *, level: float = 0.95
) -> DeLongResult:
    """DeLong's test of AUROC(a) = AUROC(b) for two score sets on the same cases (correlated ROC curves).

    Var(auc_a - auc_b) = c' (S10 / m + S01 / n) c with c = (1, -1) and S10, S01 the 2x2 covariance
    matrices of the two sets' structural components: the covariance term is what pairing buys.
    """
    positive = _positive_mask(y_true)
    both = np.vstack([_score_matrix(scores_a, positive.size), _score_matrix(scores_b, positive.size)])
    v10, v01 = _structural_components(positive, both)
    d10, d01 = v10[0] - v10[1], v01[0] - v01[1]  # c' V: variance of the difference without the 2x2 matrices
    variance = d10.var(ddof=1) / d10.size + d01.var(ddof=1) / d01.size
    auc_a, auc_b = v10[0].mean(), v10[1].mean()
    return _compare(auc_a - auc_b, variance, auc_a, auc_b, level)


def _difference_components(
    positive: np.ndarray, scores: np.ndarray, contrast: np.ndarray
) -> tuple[float, float, np.ndarray]:
    """auc_a, auc_b and the scaled, centred per-case components phi (N,) of contrast' AUCs for one class.

    `scores` stacks the score sets (models or seeds) of both sides; `contrast` weighs them (1, -1 for two
    models; 1/Sa each for a's Sa seeds and -1/Sb each for b's, for the difference of seed means).
    """
    v10, v01 = _structural_components(positive, scores)
    d10, d01 = contrast @ v10, contrast @ v01
    m, n = d10.size, d01.size
    phi = np.empty(positive.size)
    phi[positive] = (d10 - d10.mean()) / np.sqrt(m * (m - 1))
    phi[~positive] = (d01 - d01.mean()) / np.sqrt(n * (n - 1))
    aucs = v10.mean(axis=1)
    return float(aucs[contrast > 0].mean()), float(aucs[contrast < 0].mean()), phi


def delong_ovr(y_true: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, *, level: float = 0.95) -> dict:
    """Paired DeLong tests of one-vs-rest AUROCs per class, and of their macro mean, for two models.

    `y_true` holds integer classes 0..k-1 and `probs_a`, `probs_b` are (n, k) class scores of the two
    models on the same cases, or (seeds, n, k) stacks: then each side's AUROC is the mean over its seeds
    of the per-seed AUROC (the leaderboard's estimand), a linear contrast of correlated AUROCs that
    DeLong's covariance handles as it stands; the trained seeds are held fixed (test-set sampling only).
    For two classes only the positive class (index 1) is compared, as in
    `benchmark.metrics.scores.macro_auroc`; the macro result is then that class's result.

    Returns {"classes": [class indices compared], "per_class": {class: DeLongResult},
    "macro": DeLongResult, "covariance": (c, c) covariance of the per-class differences}. Per class the
    result is exactly `delong_paired_test(y_true == class, probs_a[:, class], probs_b[:, class])`; the
    macro difference is the mean of the per-class differences (= difference of the two macro AUROCs).

    Derivation of the macro variance. Each class's AUROC difference D_k is a two-sample U-statistic
    whose two samples (class k vs the rest) partition the same N cases differently for every k, so the
    D_k are correlated through shared cases and the per-class DeLong variances alone do not give
    Var(mean_k D_k). Linearising (the Hajek projection behind DeLong's variance),
        D_k - E D_k ~= sum_{i in P_k} (d10_k(i) - D_k) / m_k + sum_{j in N_k} (d01_k(j) - D_k) / n_k,
    with d10_k = V10_k(a) - V10_k(b) over the m_k positives P_k and d01_k likewise over the n_k negatives
    N_k. That is a sum over cases of one term per case, phi_k(c), whose terms have mean zero within every
    true class (the structural components of class k average to its AUROC over P_k and over N_k), so for
    independent cases Cov(D_k, D_l) ~= sum_c phi_k(c) phi_l(c) - a joint sandwich/jackknife-type estimate
    over the N x c matrix Phi of per-case components, Sigma = Phi' Phi. Scaling the terms by
    1 / sqrt(m_k (m_k - 1)) and 1 / sqrt(n_k (n_k - 1)) instead of 1 / m_k and 1 / n_k (asymptotically the
    same) makes the diagonal exactly DeLong's paired variance of each class (ddof=1), so the per-class and
    macro results agree; Sigma is positive semidefinite by construction. Then
        Var(macro difference) = 1' Sigma 1 / c^2 = sum_c (mean_k phi_k(c))^2.
    """
    y = np.asarray(y_true).ravel()
    a, b = np.asarray(probs_a, dtype=float), np.asarray(probs_b, dtype=float)
    a, b = (x[None] if x.ndim == 2 else x for x in (a, b))
    if a.ndim != 3 or a.shape[1:] != b.shape[1:] or a.shape[1] != y.size:
        raise ValueError(
            f"probs_a and probs_b must both be (n_cases, n_classes) or (seeds, n_cases, n_classes) with "
            f"n_cases = {y.size}; got {np.shape(probs_a)} and {np.shape(probs_b)}"
        )
    n_classes = a.shape[2]
    contrast = np.concatenate([np.full(len(a), 1 / len(a)), np.full(len(b), -1 / len(b))])
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes; got {n_classes}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"y_true must hold integer classes 0..{n_classes - 1}")
    classes = [1] if n_classes == 2 else list(range(n_classes))

    aucs_a, aucs_b, phis = [], [], []
    for k in classes:
        positive = y == k
        _require_both(positive, f"class {k}")
        both = _score_matrix(np.vstack([a[:, :, k], b[:, :, k]]), y.size)
        auc_a, auc_b, phi = _difference_components(positive, both, contrast)
        aucs_a.append(auc_a)
        aucs_b.append(auc_b)
        phis.append(phi)
    phi_matrix = np.column_stack(phis)  # (N, c)
    covariance = phi_matrix.T @ phi_matrix
    differences = np.array(aucs_a) - np.array(aucs_b)

    per_class = {
        k: _compare(differences[i], covariance[i, i], aucs_a[i], aucs_b[i], level)
        for i, k in enumerate(classes)
    }
    macro_variance = float(np.sum(phi_matrix.mean(axis=1) ** 2))
    macro = _compare(
        float(differences.mean()), macro_variance, float(np.mean(aucs_a)), float(np.mean(aucs_b)), level
    )
    return {"classes": classes, "per_class": per_class, "macro": macro, "covariance": covariance}


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order: the i-th smallest p times (m - i + 1),
    made non-decreasing along the sorted order and capped at 1. Reject where adjusted p <= alpha."""
    p = np.asarray(p_values, dtype=float).ravel()
    if p.size == 0:
        return p
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted
