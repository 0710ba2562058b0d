"""kalign_core.measures.alignment against naive float64 formulas written out here: explicit H = I - 11ᵀ/m,
explicit Frobenius sums, the unbiased HSIC as a U-statistic over distinct index tuples, and the
numbers published with Kornblith et al.'s CKA demo notebook."""

import itertools
import math

import numpy as np
import pytest
import torch

from kalign_core.measures import alignment
from kalign_core.measures.alignment import (
    AlignmentUndefined,
    center_kernel,
    centered_alignment,
    centered_feature_kernel,
    debiased_alignment,
    feature_alignment,
    one_hot,
)

# ---------------------------------------------------------------- naive references (float64)


def naive_center(k):
    m = len(k)
    h = np.eye(m) - np.ones((m, m)) / m
    return h @ np.asarray(k, dtype=np.float64) @ h


def frobenius(a, b):
    return float(np.sum(a * b))


def naive_alignment(k, l):
    kc, lc = naive_center(k), naive_center(l)
    return frobenius(kc, lc) / math.sqrt(frobenius(kc, kc) * frobenius(lc, lc))


def naive_uncentered_alignment(k, l):
    return frobenius(k, l) / math.sqrt(frobenius(k, k) * frobenius(l, l))


def falling(n, r):
    return math.perm(n, r)


def naive_unbiased_hsic(k, l):
    """Song et al. (2012) HSIC₁ as the U-statistic it equals: means over distinct index tuples of
    k_ij l_ij + k_ij l_qr - 2 k_ij l_iq."""
    n = len(k)
    pairs = sum(k[i, j] * l[i, j] for i, j in itertools.permutations(range(n), 2)) / falling(n, 2)
    quads = sum(k[i, j] * l[q, r] for i, j, q, r in itertools.permutations(range(n), 4)) / falling(n, 4)
    triples = sum(k[i, j] * l[i, q] for i, j, q in itertools.permutations(range(n), 3)) / falling(n, 3)
    return pairs + quads - 2 * triples


def naive_debiased(k, l):
    return naive_unbiased_hsic(k, l) / math.sqrt(naive_unbiased_hsic(k, k) * naive_unbiased_hsic(l, l))


def kornblith_rbf_gram(x, threshold):
    """As in Kornblith's notebook: exp(-d² / (2 threshold² median(d²))), median over all entries."""
    dot = x @ x.T
    sq_norms = np.diag(dot)
    sq_dist = sq_norms[:, None] + sq_norms[None, :] - 2 * dot
    return np.exp(-sq_dist / (2 * threshold**2 * np.median(sq_dist)))


def rng(seed=0):
    return np.random.default_rng(seed)


def random_psd(m, rank, seed):
    a = rng(seed).standard_normal((m, rank))
    return a @ a.T


def labelled_features(m=60, d=5, seed=0):
    """Features with some class signal in them, and two-class labels 0/1."""
    r = rng(seed)
    y = r.integers(0, 2, m)
    phi = r.standard_normal((m, d))
    phi[:, 0] += 1.5 * y
    return phi, y


# ---------------------------------------------------------------- centering


def test_center_kernel_equals_hkh_even_for_a_non_symmetric_matrix():
    k = rng().standard_normal((9, 9))
    np.testing.assert_allclose(center_kernel(k).numpy(), naive_center(k), atol=1e-12)


def test_centered_kernel_rows_and_columns_sum_to_zero():
    kc = center_kernel(random_psd(12, 4, seed=1)).numpy()
    np.testing.assert_allclose(kc @ np.ones(12), 0, atol=1e-12)
    np.testing.assert_allclose(np.ones(12) @ kc, 0, atol=1e-12)


def test_centering_is_idempotent_h_kc_h_equals_kc():
    kc = center_kernel(random_psd(10, 3, seed=2)).numpy()
    np.testing.assert_allclose(naive_center(kc), kc, atol=1e-12)
    np.testing.assert_allclose(center_kernel(kc).numpy(), kc, atol=1e-12)


def test_centering_removes_row_column_and_constant_offsets():
    r = rng(3)
    k = random_psd(11, 5, seed=3)
    a, b = r.standard_normal(11), r.standard_normal(11)
    shifted = k + np.outer(a, np.ones(11)) + np.outer(np.ones(11), b) + 4.2
    np.testing.assert_allclose(center_kernel(shifted).numpy(), center_kernel(k).numpy(), atol=1e-12)


def test_alignment_lemma_centering_one_kernel_is_enough():
    k, l = random_psd(10, 3, seed=4), random_psd(10, 6, seed=5)
    lc = naive_center(l)
    assert frobenius(center_kernel(k).numpy(), center_kernel(l).numpy()) == pytest.approx(frobenius(k, lc), rel=1e-12)


def test_centered_feature_kernel_is_h_phi_phi_t_h_in_float32():
    phi = rng(6).standard_normal((15, 4)) + 3.0
    kc = centered_feature_kernel(phi)
    assert kc.dtype == np.float32
    np.testing.assert_allclose(kc, naive_center(phi @ phi.T), rtol=1e-5, atol=1e-5)


def test_one_hot_matches_identity_rows():
    np.testing.assert_array_equal(one_hot(np.array([2, 0, 1, 2])).numpy(), np.eye(3)[[2, 0, 1, 2]])
    assert one_hot(np.array([0, 1]), n_classes=4).shape == (2, 4)


# ---------------------------------------------------------------- centered alignment of kernels


def test_centered_alignment_matches_naive_formula():
    k, l = random_psd(20, 3, seed=7), kornblith_rbf_gram(rng(8).standard_normal((20, 4)), 1.0)
    assert centered_alignment(k, l) == pytest.approx(naive_alignment(k, l), rel=1e-12)


def test_alignment_of_a_kernel_with_itself_is_one():
    k = random_psd(15, 4, seed=9)
    assert centered_alignment(k, k) == pytest.approx(1.0, abs=1e-12)


def test_alignment_is_symmetric():
    k, l = random_psd(15, 2, seed=10), random_psd(15, 7, seed=11)
    assert centered_alignment(k, l) == pytest.approx(centered_alignment(l, k), rel=1e-13)


@pytest.mark.parametrize("c", [1e-3, 0.5, 7.0, 1e4])
def test_alignment_is_invariant_to_positive_scaling(c):
    k, l = random_psd(15, 3, seed=12), random_psd(15, 5, seed=13)
    assert centered_alignment(c * k, l) == pytest.approx(centered_alignment(k, l), rel=1e-12)
    assert centered_alignment(k, c * l) == pytest.approx(centered_alignment(k, l), rel=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_alignment_of_psd_kernels_lies_in_zero_one(seed):
    r = rng(100 + seed)
    m = int(r.integers(5, 40))
    k = random_psd(m, int(r.integers(1, m + 1)), seed=200 + seed)
    l = kornblith_rbf_gram(r.standard_normal((m, 3)), float(r.uniform(0.2, 2.0)))
    rho = centered_alignment(k, l)
    assert -1e-12 <= rho <= 1 + 1e-12
    assert rho == pytest.approx(naive_alignment(k, l), rel=1e-10, abs=1e-14)


def _as_inputs(k32):
    """One float32 kernel in four forms; all hold the same values exactly."""
    return [k32, k32.astype(np.float64), torch.from_numpy(k32), torch.from_numpy(k32.astype(np.float64))]


def test_numpy_and_torch_inputs_of_any_float_dtype_agree():
    k32 = random_psd(25, 4, seed=14).astype(np.float32)
    l32 = random_psd(25, 9, seed=15).astype(np.float32)
    expected = naive_alignment(k32.astype(np.float64), l32.astype(np.float64))
    for k, l in zip(_as_inputs(k32), _as_inputs(l32)):
        assert centered_alignment(k, l) == pytest.approx(expected, rel=1e-12)
        assert isinstance(centered_alignment(k, l), float)


# ---------------------------------------------------------------- alignment straight from features


def test_feature_alignment_equals_kernel_alignment_and_naive_formula():
    phi, y = labelled_features()
    target = np.eye(2)[y]
    expected = naive_alignment(phi @ phi.T, target @ target.T)
    assert feature_alignment(phi, y) == pytest.approx(expected, rel=1e-12)
    assert centered_alignment(phi @ phi.T, target @ target.T) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("m, d", [(10, 40), (50, 5)], ids=["more-features-than-points", "more-points-than-features"])
def test_feature_alignment_both_gram_routes_and_chunking(m, d, monkeypatch):
    monkeypatch.setattr(alignment, "GRAM_CHUNK_ROWS", 7)  # many chunks, the last one partial
    phi, y = labelled_features(m, d, seed=16)
    target = np.eye(2)[y]
    expected = naive_alignment(phi @ phi.T, target @ target.T)
    assert feature_alignment(phi, y) == pytest.approx(expected, rel=1e-12)
    phi32 = phi.astype(np.float32)
    expected32 = naive_alignment(phi32.astype(np.float64) @ phi32.T.astype(np.float64), target @ target.T)
    assert feature_alignment(torch.from_numpy(phi32), torch.from_numpy(y)) == pytest.approx(expected32, rel=1e-5)


def test_feature_alignment_multi_class_uses_the_one_hot_target():
    r = rng(17)
    y = r.integers(0, 4, 80)
    phi = r.standard_normal((80, 6)) + np.eye(4)[y] @ r.standard_normal((4, 6))
    target = np.eye(4)[y]
    expected = naive_alignment(phi @ phi.T, target @ target.T)
    assert feature_alignment(phi, y) == pytest.approx(expected, rel=1e-12)
    assert feature_alignment(phi, target) == pytest.approx(expected, rel=1e-12)


def _linear_cka(x, y):
    return naive_alignment(x @ x.T, y @ y.T)


@pytest.mark.parametrize(
    "transform",
    [
        lambda phi, r: phi @ np.linalg.qr(r.standard_normal((phi.shape[1],) * 2))[0],
        lambda phi, r: 3.7 * phi,
        lambda phi, r: 0.01 * phi,
        lambda phi, r: phi + r.standard_normal(phi.shape[1]) * 100,
    ],
    ids=["orthogonal", "scale-up", "scale-down", "mean-shift"],
)
def test_linear_cka_invariances(transform):
    r = rng(18)
    x, y = r.standard_normal((40, 6)), r.standard_normal((40, 3))
    y[:, 0] += x[:, 0]
    moved = transform(x, r)
    assert feature_alignment(moved, y) == pytest.approx(feature_alignment(x, y), rel=1e-9)
    assert _linear_cka(moved, y) == pytest.approx(_linear_cka(x, y), rel=1e-9)


def test_linear_cka_is_not_invariant_to_a_general_invertible_map():
    r = rng(19)
    x, y = r.standard_normal((40, 6)), r.standard_normal((40, 3))
    y[:, 0] += x[:, 0]
    stretch = np.diag(np.linspace(0.1, 10.0, 6)) + 0.3 * r.standard_normal((6, 6))
    assert abs(np.linalg.det(stretch)) > 1e-3
    stretched = feature_alignment(x @ stretch, y)
    assert stretched == pytest.approx(_linear_cka(x @ stretch, y), rel=1e-10)
    assert abs(stretched - feature_alignment(x, y)) > 1e-2


def test_two_class_label_encodings_give_the_same_centered_alignment():
    phi, y = labelled_features(seed=20)
    one_hot_y = np.eye(2)[y]
    expected = naive_alignment(phi @ phi.T, one_hot_y @ one_hot_y.T)
    encodings = {
        "class index": y,
        "one-hot": one_hot_y,
        "±1": 2 * y - 1,
        "±1 column": (2.0 * y - 1)[:, None],
        "{0,1} column": y.astype(np.float64)[:, None],
        "raw digits": y + 8,
        "raw digits column": (y + 8.0)[:, None],
        "torch class index": torch.from_numpy(y),
    }
    for name, labels in encodings.items():
        assert feature_alignment(phi, labels) == pytest.approx(expected, rel=1e-12), name
        column = np.asarray(labels, dtype=np.float64).reshape(len(y), -1)
        kernel_rho = centered_alignment(phi @ phi.T, column @ column.T)
        assert kernel_rho == pytest.approx(expected, rel=1e-12), name
    # Without centering the encodings disagree: that is why the metric is centered.
    pm, zero_one = (2.0 * y - 1)[:, None], y.astype(np.float64)[:, None]
    k = phi @ phi.T
    assert abs(naive_uncentered_alignment(k, pm @ pm.T) - naive_uncentered_alignment(k, zero_one @ zero_one.T)) > 1e-2


def test_float32_features_with_a_large_offset_keep_their_digits():
    """500×50 features offset by +1000: a float32 Gram formed before centering loses most digits;
    feature_alignment centers first and must match float64 on the same float32 values."""
    r = rng(21)
    phi32 = (r.standard_normal((500, 50)) + 1000).astype(np.float32)
    y = r.integers(0, 2, 500)
    target = np.eye(2)[y]
    phi64 = phi32.astype(np.float64)
    expected = naive_alignment(phi64 @ phi64.T, target @ target.T)
    assert feature_alignment(phi32, y) == pytest.approx(expected, rel=1e-5)
    assert feature_alignment(torch.from_numpy(phi32), y) == pytest.approx(expected, rel=1e-5)
    # The premise: the naive float32 route really is wrong on this input.
    gram32 = phi32 @ phi32.T
    h32 = (np.eye(500) - 1 / 500).astype(np.float32)
    kc32, lc32 = h32 @ gram32 @ h32, h32 @ (target @ target.T).astype(np.float32) @ h32
    naive32 = float((kc32 * lc32).sum() / np.sqrt((kc32 * kc32).sum() * (lc32 * lc32).sum()))
    assert abs(naive32 - expected) > 0.1 * expected


# ---------------------------------------------------------------- Kornblith's published numbers


@pytest.fixture
def kornblith_xy():
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    return x, y


def test_kornblith_linear_cka(kornblith_xy):
    x, y = kornblith_xy
    assert round(feature_alignment(x, y), 5) == 0.55761
    assert round(centered_alignment(x @ x.T, y @ y.T), 5) == 0.55761


def test_kornblith_debiased_linear_cka(kornblith_xy):
    x, y = kornblith_xy
    assert round(debiased_alignment(x @ x.T, y @ y.T), 5) == 0.51346


def test_kornblith_rbf_cka(kornblith_xy):
    x, y = kornblith_xy
    rho = centered_alignment(kornblith_rbf_gram(x, 0.5), kornblith_rbf_gram(y, 0.5))
    assert round(rho, 5) == 0.65483


# ---------------------------------------------------------------- debiased (unbiased HSIC)


@pytest.mark.parametrize("seed", range(3))
def test_debiased_alignment_matches_the_u_statistic(seed):
    r = rng(300 + seed)
    x = r.standard_normal((8, 3))
    k = x @ x.T  # non-zero diagonal: zeroing it (not K - diag K) is what makes HSIC₁ unbiased
    l = kornblith_rbf_gram(x + r.standard_normal((8, 3)), 1.0)
    assert debiased_alignment(k, l) == pytest.approx(naive_debiased(k, l), rel=1e-10)
    assert debiased_alignment(torch.from_numpy(k), l) == pytest.approx(naive_debiased(k, l), rel=1e-10)


def test_debiased_alignment_can_be_negative():
    values = []
    for seed in range(20):
        r = rng(400 + seed)
        x, z = r.standard_normal((10, 2)), r.standard_normal((10, 2))
        values.append(debiased_alignment(x @ x.T, z @ z.T))
        assert values[-1] == pytest.approx(naive_debiased(x @ x.T, z @ z.T), rel=1e-9)
    assert min(values) < 0


def test_debiased_alignment_needs_four_points():
    k = random_psd(3, 2, seed=22)
    with pytest.raises(ValueError, match="at least 4"):
        debiased_alignment(k, k)


# ---------------------------------------------------------------- degenerate inputs


def _assert_undefined(call, mentions):
    with pytest.raises(AlignmentUndefined) as raised:
        call()
    assert isinstance(raised.value, ValueError)
    assert mentions in raised.value.reason and raised.value.reason == str(raised.value)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "make_phi",
    [
        lambda m, r: np.zeros((m, 16)),
        lambda m, r: np.tile(r.standard_normal(16), (m, 1)),
        lambda m, r: np.full((m, 16), 0.1),
    ],
    ids=["all-dead-relus", "constant-features", "constant-0.1"],
)
@pytest.mark.parametrize("m", [200, 333])
def test_constant_features_are_undefined_never_a_number(make_phi, dtype, m):
    r = rng(23)
    phi = make_phi(m, r).astype(dtype)
    y = r.integers(0, 2, m)
    _assert_undefined(lambda: feature_alignment(phi, y), "feature kernel")
    _assert_undefined(lambda: feature_alignment(torch.from_numpy(phi), y), "feature kernel")
    phi64 = phi.astype(np.float64)
    target = np.eye(2)[y]
    _assert_undefined(lambda: centered_alignment(phi64 @ phi64.T, target @ target.T), "first kernel")


def test_a_probe_of_one_class_is_undefined():
    phi = rng(24).standard_normal((30, 5))
    one_class = np.zeros(30, dtype=np.int64)
    _assert_undefined(lambda: feature_alignment(phi, one_class), "target kernel")
    _assert_undefined(lambda: feature_alignment(phi, np.full(30, 0.3)[:, None]), "target kernel")
    target = np.eye(2)[one_class]
    _assert_undefined(lambda: centered_alignment(phi @ phi.T, target @ target.T), "second kernel")


@pytest.mark.parametrize("c", [0.0, 0.1, 1.0, 1 / 3])
def test_constant_kernels_are_undefined(c):
    k, other = np.full((20, 20), c), random_psd(20, 3, seed=25)
    _assert_undefined(lambda: centered_alignment(k, other), "first kernel")
    _assert_undefined(lambda: centered_alignment(other, k), "second kernel")
    _assert_undefined(lambda: debiased_alignment(k, other), "first kernel")


def test_non_finite_features_are_undefined():
    phi, y = labelled_features()
    phi[3, 2] = np.nan
    _assert_undefined(lambda: feature_alignment(phi, y), "non-finite")
    _assert_undefined(lambda: centered_alignment(phi @ phi.T, np.eye(60)), "non-finite")


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: center_kernel(np.ones((3, 4))), "square"),
        (lambda: centered_alignment(np.eye(3), np.eye(4)), "differ in size"),
        (lambda: debiased_alignment(np.eye(5), np.eye(6)), "differ in size"),
        (lambda: feature_alignment(np.ones(5), np.arange(5)), "m×d"),
        (lambda: feature_alignment(np.ones((5, 2)), np.arange(4) % 2), "5 rows"),
    ],
    ids=["non-square", "size-mismatch", "debiased-size-mismatch", "1d-features", "label-count"],
)
def test_malformed_input_is_a_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
