"""Centered kernel alignment (Cortes, Mohri & Rostamizadeh 2012) and its debiased variant.

Everything accumulates in float64. Kernels are centered in O(m²) without forming H = I - 11ᵀ/m,
and `feature_alignment` never forms an m×m matrix when m exceeds the feature count.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

# Rows per chunk when a float32 Gram matrix is accumulated in float64.
GRAM_CHUNK_ROWS = 4096
# Rows per chunk when features are converted to float64 on a CPU: small enough to stay in cache,
# where the conversion is ten times faster than through main memory. GPUs take GRAM_CHUNK_ROWS.
_CPU_CONVERT_CHUNK_ROWS = 256
# A centered matrix this small next to the uncentered one is rounding error in the subtracted means
# (e.g. constant features), not signal: it counts as zero, so alignment is undefined, not noise.
_NEGLIGIBLE = 1e-12


class AlignmentUndefined(ValueError):
    """Alignment is 0/0: a centered kernel has zero norm. `reason` says which and why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _as_float64(x) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    return x.detach().to(torch.float64)


def _check_square(k: torch.Tensor, name: str) -> None:
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{name} must be a square m×m matrix (got shape {tuple(k.shape)})")


def center_kernel(k) -> torch.Tensor:
    """Kc = HKH in O(m²): K - row means - column means + grand mean (float64). A stack of kernels
    (..., m, m) is centered matrix by matrix."""
    k = _as_float64(k)
    if k.ndim < 2 or k.shape[-1] != k.shape[-2]:
        raise ValueError(f"kernel must be a square m×m matrix, or a stack of them (got shape {tuple(k.shape)})")
    row_means = k.mean(dim=-1, keepdim=True)
    col_means = k.mean(dim=-2, keepdim=True)
    return (k - row_means).sub_(col_means).add_(row_means.mean(dim=-2, keepdim=True))


def zero_if_negligible(centered: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """`centered` with each of its matrices (the last two axes) set to zero where its Frobenius norm
    is negligible next to the same matrix of `original`'s: rounding error in subtracted means, not
    signal."""
    if not centered.numel():
        return centered
    scale = _norms(original)
    negligible = (_norms(centered) <= _NEGLIGIBLE * scale) & scale.isfinite()  # not an overflow to inf
    return centered.masked_fill(negligible[..., None, None], 0.0) if negligible.any() else centered


def _norms(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x, dim=(-2, -1)) if x.ndim >= 2 else torch.linalg.vector_norm(x)


def ratio_or_reason(
    inner: float, norm_a: float, norm_b: float, names: tuple[str, str]
) -> tuple[float | None, str | None]:
    """inner / (norm_a · norm_b), or None and why it is undefined (a norm non-finite or zero)."""
    for norm, name in zip((norm_a, norm_b), names):
        if not math.isfinite(norm):
            return None, f"the {name} has non-finite entries"
        if norm == 0:
            return None, f"the centered {name} is zero (all points look the same to it), so alignment is 0/0"
    return inner / (norm_a * norm_b), None


def _ratio(inner: torch.Tensor, norm_a: torch.Tensor, norm_b: torch.Tensor, names) -> float:
    value, reason = ratio_or_reason(float(inner), float(norm_a), float(norm_b), names)
    if reason:
        raise AlignmentUndefined(reason)
    return value


def frobenius_inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """⟨A, B⟩_F = Σᵢⱼ AᵢⱼBᵢⱼ of each pair of matrices (the last two axes) of two stacks that
    broadcast against each other."""
    return torch.linalg.vecdot(a.flatten(-2), b.flatten(-2))


def alignment_ratios(
    inner: torch.Tensor, norm_a: torch.Tensor, norm_b: torch.Tensor, names: tuple[str, str]
) -> list[tuple[float | None, str | None]]:
    """`ratio_or_reason` of each element of three stacks that broadcast, flattened."""
    columns = (x.flatten().tolist() for x in torch.broadcast_tensors(inner, norm_a, norm_b))
    return [ratio_or_reason(*values, names) for values in zip(*columns)]


def centered_alignment(k, l) -> float:
    """ρ(K, L) = ⟨Kc, Lc⟩_F / (‖Kc‖_F ‖Lc‖_F) for two m×m kernel matrices."""
    k, l = _as_float64(k), _as_float64(l)
    _check_square(k, "kernel")
    _check_square(l, "kernel")
    if k.shape != l.shape:
        raise ValueError(f"kernels differ in size: {tuple(k.shape)} vs {tuple(l.shape)}")
    kc, lc = zero_if_negligible(center_kernel(k), k), zero_if_negligible(center_kernel(l), l)
    norms = torch.linalg.matrix_norm(kc), torch.linalg.matrix_norm(lc)
    return _ratio(frobenius_inner(kc, lc), *norms, ("first kernel", "second kernel"))


def one_hot(labels, n_classes: int | None = None) -> torch.Tensor:
    """Class indices (m,) -> one-hot float64 (m, k); the target kernel is YYᵀ."""
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    labels = labels.long().cpu()
    k = int(labels.max()) + 1 if n_classes is None else n_classes
    return torch.nn.functional.one_hot(labels, k).to(torch.float64)


def _as_target_matrix(y, m: int) -> torch.Tensor:
    y = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    if y.ndim == 1:
        if y.dtype.is_floating_point and not torch.equal(y, y.round()):
            return _as_float64(y)[:, None]  # real-valued targets: K_y = yyᵀ
        y = one_hot(torch.unique(y, return_inverse=True)[1])  # any label values: ±1, raw digits
    y = _as_float64(y)
    if y.ndim != 2 or y.shape[0] != m:
        raise ValueError(f"targets must have {m} rows to match the features (got {tuple(y.shape)})")
    return y


def _gram_norm(xc: torch.Tensor) -> torch.Tensor:
    """‖XcᵀXc‖_F = ‖XcXcᵀ‖_F, via whichever Gram is smaller: products in the input's dtype over
    chunks of the longer side, summed in float64 (a float64 product would run at half speed)."""
    rows = xc if xc.shape[0] > xc.shape[1] else xc.T
    parts = ((chunk.T @ chunk).to(torch.float64) for chunk in rows.split(GRAM_CHUNK_ROWS))
    return functools.reduce(torch.Tensor.add_, parts).norm()  # the first part is the accumulator


def feature_alignment(phi, y) -> float:
    """ρ(ΦΦᵀ, YYᵀ) = ‖ΦcᵀYc‖²_F / (‖ΦcᵀΦc‖_F ‖YcᵀYc‖_F), linear CKA, without an m×m kernel.

    `phi` is m×d features (torch or numpy, any float dtype; kept in its dtype for the large
    product, centered first with float64 means). `y` is class indices (m,), or an m×k target matrix.
    """
    phi = phi if isinstance(phi, torch.Tensor) else torch.from_numpy(np.asarray(phi))
    phi = phi.detach()
    if phi.ndim != 2:
        raise ValueError(f"features must be an m×d matrix (got shape {tuple(phi.shape)})")
    if not phi.dtype.is_floating_point:
        phi = phi.to(torch.float64)
    m = phi.shape[0]
    target = _as_target_matrix(y, m).to(phi.device)
    y_c = zero_if_negligible(target - target.mean(dim=0), target)
    mean, cross = _mean_and_cross(phi, y_c)
    phi_c = zero_if_negligible(phi - mean.to(phi.dtype), phi)
    return _ratio((cross**2).sum(), _gram_norm(phi_c), (y_c.T @ y_c).norm(), ("feature kernel", "target kernel"))


def _mean_and_cross(x: torch.Tensor, y_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x's column means and x_cᵀ y_c (d×k), in float64, from one product [y_c | 1]ᵀ x over x
    converted a chunk at a time. x_cᵀ y_c = xᵀ y_c because y_c's columns sum to zero, and the
    column of ones sums x exactly (so constant features center to exactly zero)."""
    m = x.shape[0]
    weights = torch.cat([y_c, torch.ones(m, 1, dtype=torch.float64, device=x.device)], dim=1)
    products = torch.zeros(weights.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
    rows = _convert_chunk_rows(x)
    for start in range(0, m, rows):
        products.addmm_(weights[start : start + rows].T, x[start : start + rows].to(torch.float64))
    return products[-1] / m, products[:-1].T


def _convert_chunk_rows(x: torch.Tensor) -> int:
    return _CPU_CONVERT_CHUNK_ROWS if x.device.type == "cpu" else GRAM_CHUNK_ROWS


def _unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """HSIC₁ of Song et al. (2012) with zeroed diagonals (not K - diag(K))."""
    n = k.shape[0]
    k = k.clone().fill_diagonal_(0)
    l = l.clone().fill_diagonal_(0)
    k_ones, l_ones = k.sum(dim=1), l.sum(dim=1)
    trace = (k * l).sum()  # tr(K̃L̃) for symmetric L̃
    middle = k_ones.sum() * l_ones.sum() / ((n - 1) * (n - 2))
    last = 2.0 / (n - 2) * (k_ones @ l_ones)
    return (trace + middle - last) / (n * (n - 3))


def debiased_alignment(k, l) -> float:
    """Debiased CKA: unbiased HSIC in numerator and denominator (Song et al. 2012). Can be < 0."""
    k, l = _as_float64(k), _as_float64(l)
    _check_square(k, "first kernel")
    _check_square(l, "second kernel")
    if k.shape != l.shape:
        raise ValueError(f"kernels differ in size: {tuple(k.shape)} vs {tuple(l.shape)}")
    if k.shape[0] < 4:
        raise ValueError(f"debiased alignment needs at least 4 points (got {k.shape[0]})")
    hsic_kk, hsic_ll = _unbiased_hsic(k, k), _unbiased_hsic(l, l)
    for value, kernel, name in ((hsic_kk, k, "first kernel"), (hsic_ll, l, "second kernel")):
        if value <= _NEGLIGIBLE * (kernel * kernel).mean():
            raise AlignmentUndefined(f"the unbiased HSIC of the {name} with itself is {float(value):.3g}, not above 0")
    return float(_unbiased_hsic(k, l) / (hsic_kk.sqrt() * hsic_ll.sqrt()))


def centered_feature_kernel(phi) -> np.ndarray:
    """Kc = Φc Φcᵀ (equal to H ΦΦᵀ H) as float32 for display; for small probe sets only."""
    phi64 = _as_float64(phi)
    phi_c = phi64 - phi64.mean(dim=0)
    return (phi_c @ phi_c.T).cpu().numpy().astype(np.float32)
