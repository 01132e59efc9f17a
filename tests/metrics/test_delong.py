"""DeLong's AUROC variance and paired test, its one-vs-rest/macro extension, and Holm's adjustment."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.metrics.delong import DeLongResult, delong_ovr, delong_paired_test, delong_roc_variance, holm
from benchmark.metrics.scores import macro_auroc


def tied_binary(m: int = 12, n: int = 15, seed: int = 0):
    """Labels and two correlated score sets rounded to one decimal, so ties within and across classes."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(m, int), np.zeros(n, int)]
    rng.shuffle(y)
    shared = rng.normal(size=y.size)
    a = np.round(0.8 * y + shared + 0.3 * rng.normal(size=y.size), 1)
    b = np.round(0.4 * y + shared + 0.3 * rng.normal(size=y.size), 1)
    return y, a, b


def psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def components_by_loops(y, s):
    """V10 (per positive) and V01 (per negative) straight from DeLong et al. (1988), by double loops."""
    xs = [s[i] for i in range(len(y)) if y[i] == 1]
    ys = [s[j] for j in range(len(y)) if y[j] == 0]
    v10 = [sum(psi(x, v) for v in ys) / len(ys) for x in xs]
    v01 = [sum(psi(x, v) for x in xs) / len(xs) for v in ys]
    return v10, v01


def sample_cov(u, v):
    mu, mv = sum(u) / len(u), sum(v) / len(v)
    return sum((a - mu) * (b - mv) for a, b in zip(u, v, strict=True)) / (len(u) - 1)


def test_auroc_equals_sklearn_with_ties():
    y, a, _ = tied_binary()
    assert len(np.unique(a)) < a.size  # the fixture really has ties
    auc, _ = delong_roc_variance(y, a)
    assert auc == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    coarse = np.round(a)  # heavy ties
    assert delong_roc_variance(y, coarse)[0] == pytest.approx(roc_auc_score(y, coarse), abs=1e-12)


def test_variance_equals_double_loop_structural_components():
    y, a, _ = tied_binary(12, 15)
    v10, v01 = components_by_loops(y, a)
    expected_auc = sum(v10) / len(v10)
    expected_var = sample_cov(v10, v10) / len(v10) + sample_cov(v01, v01) / len(v01)
    auc, var = delong_roc_variance(y, a)
    assert auc == pytest.approx(expected_auc, abs=1e-12)
    assert auc == pytest.approx(sum(v01) / len(v01), abs=1e-12)
    assert var == pytest.approx(expected_var, rel=1e-10)


def test_paired_test_equals_double_loop_covariance():
    y, a, b = tied_binary(12, 15, seed=3)
    v10a, v01a = components_by_loops(y, a)
    v10b, v01b = components_by_loops(y, b)
    m, n = len(v10a), len(v01a)
    var = (
        (sample_cov(v10a, v10a) + sample_cov(v10b, v10b) - 2 * sample_cov(v10a, v10b)) / m
        + (sample_cov(v01a, v01a) + sample_cov(v01b, v01b) - 2 * sample_cov(v01a, v01b)) / n
    )
    diff = sum(v10a) / m - sum(v10b) / m
    result = delong_paired_test(y, a, b)
    assert isinstance(result, DeLongResult)
    assert result.auc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result.auc_b == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert result.difference == pytest.approx(diff, abs=1e-12)
    assert result.standard_error == pytest.approx(math.sqrt(var), rel=1e-10)
    z = diff / math.sqrt(var)
    assert result.z == pytest.approx(z, rel=1e-10)
    assert result.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-8)
    assert result.ci_low == pytest.approx(diff - 1.959963984540054 * math.sqrt(var), rel=1e-9)
    assert result.ci_high == pytest.approx(diff + 1.959963984540054 * math.sqrt(var), rel=1e-9)
    wider = delong_paired_test(y, a, b, level=0.99)
    assert wider.ci_low < result.ci_low and wider.ci_high > result.ci_high and wider.level == 0.99


def test_identical_scores_give_zero_difference_and_p_one():
    y, a, _ = tied_binary()
    result = delong_paired_test(y, a, a.copy())
    assert result.difference == 0.0 and result.standard_error == 0.0
    assert result.z == 0.0 and result.p_value == 1.0
    assert result.ci_low == 0.0 and result.ci_high == 0.0
    assert not any(math.isnan(v) for v in vars(result).values())


def test_clearly_better_scores_are_significant():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    noise = rng.normal(size=y.size)
    good = 2.0 * y + noise
    poor = 0.3 * y + noise + rng.normal(size=y.size)
    result = delong_paired_test(y, good, poor)
    assert result.difference > 0.1 and result.p_value < 0.01 and result.ci_low > 0
    flipped = delong_paired_test(y, poor, good)
    assert flipped.difference == pytest.approx(-result.difference) and flipped.p_value == result.p_value


def test_pairing_covariance_term_matters():
    """Correlated score sets: the paired variance is far below the sum of the two unpaired variances."""
    y, a, b = tied_binary(40, 50, seed=5)
    _, var_a = delong_roc_variance(y, a)
    _, var_b = delong_roc_variance(y, b)
    paired = delong_paired_test(y, a, b).standard_error ** 2
    assert paired < 0.6 * (var_a + var_b)
    # and with independent score sets the two agree roughly (the covariance is near zero)
    rng = np.random.default_rng(7)
    yi = rng.integers(0, 2, 400)
    ai, bi = yi + rng.normal(size=400), yi + rng.normal(size=400)
    unpaired = delong_roc_variance(yi, ai)[1] + delong_roc_variance(yi, bi)[1]
    assert delong_paired_test(yi, ai, bi).standard_error ** 2 == pytest.approx(unpaired, rel=0.25)


def test_null_rejection_rate_is_nominal():
    """Two score sets from the same distribution: DeLong rejects at 5% in about 5% of 200 data sets."""
    rng = np.random.default_rng(2024)
    rejections = 0
    for _ in range(200):
        y = rng.integers(0, 2, 120)
        shared = rng.normal(size=y.size)
        a = y + shared + rng.normal(size=y.size)
        b = y + shared + rng.normal(size=y.size)
        rejections += delong_paired_test(y, a, b).p_value < 0.05
    assert 0.02 <= rejections / 200 <= 0.09


def softmax_pair(n: int = 90, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    a = np.exp(logits + 0.5 * rng.normal(size=(n, k)))
    b = np.exp(0.6 * logits + 0.5 * rng.normal(size=(n, k)))
    return y, a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)


def test_ovr_per_class_and_macro_match_binary_calls():
    y, a, b = softmax_pair()
    found = delong_ovr(y, a, b)
    assert found["classes"] == [0, 1, 2]
    for k in range(3):
        binary = delong_paired_test((y == k).astype(int), a[:, k], b[:, k])
        got = found["per_class"][k]
        for field in ("auc_a", "auc_b", "difference", "standard_error", "z", "p_value", "ci_low", "ci_high"):
            assert getattr(got, field) == pytest.approx(getattr(binary, field), rel=1e-9, abs=1e-12)
        assert found["covariance"][k, k] == pytest.approx(binary.standard_error**2, rel=1e-9)
    macro = found["macro"]
    assert macro.auc_a == pytest.approx(macro_auroc(y, a), abs=1e-12)
    assert macro.auc_b == pytest.approx(macro_auroc(y, b), abs=1e-12)
    diffs = [found["per_class"][k].difference for k in range(3)]
    assert macro.difference == pytest.approx(np.mean(diffs), abs=1e-12)
    cov = found["covariance"]
    assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > -1e-15
    assert macro.standard_error**2 == pytest.approx(cov.sum() / 9, rel=1e-9)
    # the shared cases matter: the off-diagonal covariances are not negligible
    assert abs(cov.sum() - np.trace(cov)) > 0.05 * np.trace(cov)


def test_ovr_cross_class_covariance_by_loops():
    """Cov(D_k, D_l) = sum over cases of their per-case components, each from explicit double loops."""
    y, a, b = softmax_pair(n=36, seed=4)
    phi = np.zeros((y.size, 3))
    for k in range(3):
        pos = [i for i in range(y.size) if y[i] == k]
        neg = [j for j in range(y.size) if y[j] != k]
        m, n = len(pos), len(neg)
        d10 = [sum(psi(a[i, k], a[j, k]) - psi(b[i, k], b[j, k]) for j in neg) / n for i in pos]
        d01 = [sum(psi(a[i, k], a[j, k]) - psi(b[i, k], b[j, k]) for i in pos) / m for j in neg]
        diff = sum(d10) / m
        for i, v in zip(pos, d10, strict=True):
            phi[i, k] = (v - diff) / math.sqrt(m * (m - 1))
        for j, v in zip(neg, d01, strict=True):
            phi[j, k] = (v - diff) / math.sqrt(n * (n - 1))
    expected = [[sum(phi[c, k] * phi[c, j] for c in range(y.size)) for j in range(3)] for k in range(3)]
    found = delong_ovr(y, a, b)
    assert np.allclose(found["covariance"], expected, rtol=1e-9, atol=1e-15)
    assert found["macro"].standard_error == pytest.approx(math.sqrt(np.sum(expected) / 9), rel=1e-9)


def test_ovr_macro_variance_matches_monte_carlo():
    """Over 300 simulated test sets from one population, the macro difference's empirical variance is what
    the joint estimate says on average (sampling error ~8%), and not what the per-class variances alone say
    (they ignore the positive covariance through shared cases, ~35% too small here)."""
    rng = np.random.default_rng(11)
    differences, joint, diagonal = [], [], []
    for _ in range(300):
        y, a, b = softmax_pair(n=150, k=3, seed=int(rng.integers(1 << 31)))
        found = delong_ovr(y, a, b)
        differences.append(found["macro"].difference)
        joint.append(found["macro"].standard_error**2)
        diagonal.append(np.trace(found["covariance"]) / 9)
    empirical = np.var(differences, ddof=1)
    assert 0.8 < empirical / np.mean(joint) < 1.25
    assert empirical / np.mean(diagonal) > 1.3


def test_ovr_two_classes_uses_the_positive_class_only():
    y, a, b = softmax_pair(k=2, seed=2)
    found = delong_ovr(y, a, b)
    assert found["classes"] == [1] and list(found["per_class"]) == [1]
    assert found["macro"] == found["per_class"][1]
    assert found["macro"].auc_a == pytest.approx(macro_auroc(y, a), abs=1e-12)
    binary = delong_paired_test(y, a[:, 1], b[:, 1])
    assert found["macro"].standard_error == pytest.approx(binary.standard_error, rel=1e-9)


def test_input_errors():
    y, a, b = tied_binary()
    with pytest.raises(ValueError, match="0/1"):
        delong_roc_variance(y + 1, a)
    with pytest.raises(ValueError, match="at least 2"):
        delong_roc_variance(np.r_[1, np.zeros(9, int)], np.arange(10.0))
    with pytest.raises(ValueError, match="one value per case"):
        delong_paired_test(y, a, b[:-1])
    with pytest.raises(ValueError, match="level"):
        delong_paired_test(y, a, b, level=95)
    yk, pa, _ = softmax_pair()
    with pytest.raises(ValueError, match="class 2"):
        delong_ovr(np.where(yk == 2, 0, yk), pa, pa)


def holm_by_hand(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def test_holm_hand_worked_example():
    # sorted 0.01, 0.03, 0.04, 0.2 -> x4, x3, x2, x1 = 0.04, 0.09, 0.08, 0.2 -> monotone 0.04, 0.09, 0.09, 0.2
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.2]), [0.04, 0.09, 0.09, 0.2])
    assert np.allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped
    assert holm([]).size == 0


def test_holm_matches_manual_computation():
    rng = np.random.default_rng(0)
    for size in (1, 2, 5, 17):
        p = rng.uniform(0, 0.2, size).tolist()
        p[0] = p[-1]  # a tie
        adjusted = holm(p)
        assert np.allclose(adjusted, holm_by_hand(p), rtol=0, atol=1e-15)
        assert (adjusted >= np.array(p)).all() and (adjusted <= 1).all()
        order = np.argsort(p, kind="stable")
        assert (np.diff(adjusted[order]) >= 0).all()


def test_seed_stacks_compare_the_seed_mean_aurocs_with_the_contrast_variance_by_hand():
    """Two seeds a side: the difference of the seed-mean AUROCs, Var = c' S c with c = (1/2, 1/2, -1/2, -1/2),
    S the 4x4 covariance of the structural components computed by double loops."""
    y, a, b = tied_binary()
    rng = np.random.default_rng(3)
    a2, b2 = a + np.round(0.2 * rng.normal(size=y.size), 1), b + np.round(0.2 * rng.normal(size=y.size), 1)
    sets = [a, a2, b, b2]
    c = [0.5, 0.5, -0.5, -0.5]
    parts = [components_by_loops(y, s) for s in sets]
    m, n = int(y.sum()), int((1 - y).sum())
    variance = sum(
        c[i] * c[j] * (sample_cov(parts[i][0], parts[j][0]) / m + sample_cov(parts[i][1], parts[j][1]) / n)
        for i in range(4)
        for j in range(4)
    )
    stack = lambda *scores: np.stack([np.column_stack([-s, s]) for s in scores])  # noqa: E731
    found = delong_ovr(y, stack(a, a2), stack(b, b2))["macro"]
    aucs = [roc_auc_score(y, s) for s in sets]
    assert found.difference == pytest.approx((aucs[0] + aucs[1]) / 2 - (aucs[2] + aucs[3]) / 2, abs=1e-12)
    assert found.standard_error**2 == pytest.approx(variance, rel=1e-10)
    one_seed, paired = delong_ovr(y, stack(a), stack(b))["macro"], delong_paired_test(y, a, b)
    assert (one_seed.difference, one_seed.p_value) == pytest.approx((paired.difference, paired.p_value))
