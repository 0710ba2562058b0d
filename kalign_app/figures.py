"""Plotly figures of a run: error and alignment curves, overlays of several runs, kernel heatmaps,
a standalone HTML page of them, a sweep's digit-pair and trend charts, and the width lab's log-log
charts. Undefined or non-finite values are gaps, never spikes; a diverged model is marked at the
epoch it diverged."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from kalign_core.results import MEASURE_LABELS, MODEL_NAMES, ExperimentResult
from kalign_core.sweep.spec import mean_spread, pair_matrix
from kalign_core.sweep.width_lab import Measure, WidthLine, short_slope_text

MODEL_COLORS = {"slow": "#1f77b4", "regular": "#d62728"}
ERROR_DASH = {"test_error": "solid", "train_error": "dash"}
# A log axis whose every tick reads as a plain number of 3 digits at most (0.002, 0.005, 0.01, 1.24):
# plotly's own labels its ticks between the decades by their first digit alone ("2", "5").
LOG_AXIS = dict(type="log", tickformat=".3~g")
# Legends under the chart, anchored to the figure's bottom edge: however many rows they take, they grow
# upwards only to the x axis's title, not over it (anchored to the plot area, a long one covered it).
LEGEND_BELOW = dict(orientation="h", yref="container", yanchor="bottom", y=0)
# The alignment chart: each model's feature kernel solid, its tangent kernel dashed.
ALIGNMENT_DASH = {"alignment": ("features", "solid"), "tangent_alignment": ("tangent", "dash")}
# "How far each model moved", all relative to initialisation, on one log axis.
MOVEMENT_DASH = {
    "hidden_change": ("hidden weights ‖ΔW‖/‖W₀‖", "solid"),
    "feature_distance": ("feature kernel 1 − ρ(K, K₀)", "dash"),
    "tangent_distance": ("tangent kernel 1 − ρ(Θ, Θ₀)", "dot"),
}
NULL_FILL = {"feature": "rgba(120, 120, 120, 0.25)", "tangent": "rgba(120, 120, 120, 0.12)"}
OVERLAY_DASH = {"slow": "dot", "regular": "solid"}
# Bar charts of a page whose colours mean runs: the slow model dotted, as its curves are.
BAR_PATTERN = {"slow": dict(shape="."), "regular": dict(shape="")}
# One colour per run where a chart shows several: none blue or red, the models' colours elsewhere on
# the same pages (green, purple, orange, brown, olive, grey).
RUN_COLORS = ("#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#bcbd22", "#7f7f7f")
# Kernels larger than this are block-averaged for display (the browser gets at most this² cells).
DISPLAY_POINTS = 300
KERNEL_COLORSCALE = "RdBu_r"
SATURATE_PERCENTILE = 99


# The note that says why a metric is undefined, where not measure_note.
_NOTES = {"alignment": "alignment_note", "linear_test_error": "linear_note", "linear_gap": "linear_note"}


def _finite(value) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _curve(
    result: ExperimentResult, name: str, metric: str, label: str, color: str, dash: str, positive: bool = False
) -> list:
    """One model's metric over epochs, plus an ✕ where the model diverged; `positive` leaves out
    values a log axis cannot show (0: not moved at all)."""
    records = result.history[name]
    epochs = [r.epoch for r in records]
    values = [_finite(getattr(r, metric)) for r in records]
    if positive:
        values = [v if v is not None and v > 0 else None for v in values]
    notes = [getattr(r, _NOTES.get(metric, "measure_note")) or "" for r in records]
    traces = [
        go.Scatter(
            x=epochs,
            y=values,
            name=label,
            mode="lines+markers",
            line=dict(color=color, dash=dash),
            marker=dict(size=5),
            connectgaps=False,
            customdata=notes,
            hovertemplate=f"{label}<br>epoch %{{x}}: %{{y:.4g}}<extra>%{{customdata}}</extra>",
        )
    ]
    diverged = result.diverged_at[name]
    defined = [v for v in values if v is not None]
    if diverged is not None and defined:
        traces.append(
            go.Scatter(
                x=[diverged],
                y=[defined[-1]],
                name=f"{label} diverged",
                mode="markers",
                marker=dict(symbol="x", size=14, color=color, line=dict(width=2)),
                hovertemplate=f"{label} diverged at epoch {diverged}<extra></extra>",
                showlegend=False,
            )
        )
    return traces


def two_line_title(title: str, detail: str) -> str:
    """A long chart title as two lines, the detail smaller, so that neither is cut off in half a page."""
    return f"{title}<br><sup>{detail}</sup>"


def top_margin(title: str) -> int:
    """Room above the plot for `title`, a line more for each line break (plotly does not make it)."""
    return 50 + 20 * title.count("<br>")


def _layout(fig: go.Figure, title: str, y_title: str, epochs: int) -> go.Figure:
    """Shared look; the x axis spans the epochs drawn so far, so a live chart grows with the run."""
    epochs = max(1, epochs)
    fig.update_layout(
        title=title,
        xaxis=dict(title="epoch", range=[-0.3, epochs + 0.3], dtick=max(1, math.ceil(epochs / 10))),
        yaxis=dict(title=y_title),
        legend=LEGEND_BELOW,
        margin=dict(l=50, r=20, t=top_margin(title), b=40),
        height=380,
        hovermode="closest",
    )
    return fig


def _mark_divergence(fig: go.Figure, result: ExperimentResult) -> None:
    """A dotted line at each divergence epoch, labelled with the models that diverged there."""
    by_epoch: dict[int, list[str]] = {}
    for name in MODEL_NAMES:
        if result.diverged_at[name] is not None:
            by_epoch.setdefault(result.diverged_at[name], []).append(name)
    for epoch, names in by_epoch.items():
        fig.add_vline(
            x=epoch,
            line=dict(color=MODEL_COLORS[names[0]] if len(names) == 1 else "gray", dash="dot", width=1),
            annotation_text=f"{'both' if len(names) == 2 else names[0]} diverged",
            # Written on the side with room, so that a late divergence is not cut off at the edge.
            annotation_position="top left" if epoch > result.epochs_done / 2 else "top right",
        )


def error_figure(result: ExperimentResult) -> go.Figure:
    """Test (solid) and train (dashed) error % of both models."""
    fig = go.Figure()
    for name in MODEL_NAMES:
        for metric, dash in ERROR_DASH.items():
            label = f"{name} {metric.split('_')[0]}"
            fig.add_traces(_curve(result, name, metric, label, MODEL_COLORS[name], dash))
    _mark_divergence(fig, result)
    fig.update_yaxes(rangemode="tozero")
    return _layout(fig, "Error (test solid, train dashed)", "error %", result.epochs_done)


def alignment_figure(result: ExperimentResult) -> go.Figure:
    """Centered kernel–target alignment ρ of both models' feature kernels (solid) and tangent kernels
    (dashed), from initialisation, over the chance band of label shuffles."""
    fig = go.Figure()
    for kind, (low, high) in result.alignment_null.items():
        right = max(1, result.epochs_done)
        fig.add_scatter(
            x=[0, right, right, 0],
            y=[low, low, high, high],
            fill="toself",
            mode="none",
            fillcolor=NULL_FILL[kind],
            name=f"chance, {kind} ρ (95 % of label shuffles)",
            hovertemplate=f"{kind} ρ with shuffled labels: 95 % fall in {low:.3f}–{high:.3f}<extra></extra>",
        )
    limit = result.infinite_width.get("alignment")
    if limit is not None:
        fig.add_scatter(
            x=[0, max(1, result.epochs_done)],
            y=[limit, limit],
            mode="lines",
            line=dict(color="black", dash="dashdot", width=1),
            name="Θ∞ (width → ∞, both models' start)",
            hovertemplate=f"ρ(Θ∞, YYᵀ) = {limit:.3f}: the tangent kernel of infinite width<extra></extra>",
        )
    for metric, (kind, dash) in ALIGNMENT_DASH.items():
        for name in MODEL_NAMES:
            fig.add_traces(_curve(result, name, metric, f"{name} {kind}", MODEL_COLORS[name], dash))
    _mark_divergence(fig, result)
    for name in MODEL_NAMES:
        reason = undefined_alignment(result, name)
        if reason:
            fig.add_annotation(
                text=f"{name}: ρ undefined {reason[0]}",
                xref="paper",
                yref="paper",
                x=0,
                y=1,
                yanchor="bottom",
                showarrow=False,
                font=dict(size=11, color=MODEL_COLORS[name]),
            )
    return _layout(fig, "Alignment ρ (feature solid, Θ dashed)", "ρ", result.epochs_done)


def movement_figure(result: ExperimentResult) -> go.Figure:
    """How far each model moved from initialisation: relative hidden-weight change and the feature
    and tangent kernels' distance from their initial selves, on a log axis (0 cannot be drawn)."""
    fig = go.Figure()
    for metric, (label, dash) in MOVEMENT_DASH.items():
        for name in MODEL_NAMES:
            fig.add_traces(_curve(result, name, metric, f"{name} {label}", MODEL_COLORS[name], dash, positive=True))
    notes = [
        f"{name}: hidden weights never moved (exactly 0)"
        for name in MODEL_NAMES
        if result.history[name][-1].hidden_change == 0
    ]
    if all(r.hidden_change is None for records in result.history.values() for r in records):
        notes = ["not measured: this run was saved before kalign measured how far models move"]
    for i, note in enumerate(notes):
        fig.add_annotation(
            text=note,
            xref="paper",
            yref="paper",
            x=0,
            y=1 - 0.07 * i,
            yanchor="top",
            showarrow=False,
            font=dict(size=11),
        )
    _mark_divergence(fig, result)
    fig.update_yaxes(**LOG_AXIS)
    return _layout(fig, "How far each model moved from its start", "relative change (log)", result.epochs_done)


def twin_figure(result: ExperimentResult) -> go.Figure:
    """Each network's test error (solid) beside its linearized twin's (dashed), and the gap
    ‖g − g_lin‖ / ‖g_lin − g₀‖ between them (dotted, right, log axis: its 0 at epoch 0 is not drawn)."""
    fig = go.Figure()
    for name in MODEL_NAMES:
        color = MODEL_COLORS[name]
        fig.add_traces(_curve(result, name, "test_error", f"{name} network", color, "solid"))
        fig.add_traces(_curve(result, name, "linear_test_error", f"{name} twin", color, "dash"))
        gap = _curve(result, name, "linear_gap", f"{name} gap (right)", color, "dot", positive=True)
        fig.add_traces([trace.update(yaxis="y2") for trace in gap])
    _mark_divergence(fig, result)
    fig.update_yaxes(rangemode="tozero")
    _layout(fig, "The network and its linearized twin (test error; gap, right)", "test error %", result.epochs_done)
    return fig.update_layout(
        yaxis2=dict(title="gap ‖g − g_lin‖ / ‖g_lin − g₀‖ (log)", overlaying="y", side="right", **LOG_AXIS),
        margin=dict(r=60),
    )


MACHINE_BARS = {
    ("init", "feature"): "feature K₀",
    ("final", "feature"): "feature K (end)",
    ("init", "tangent"): "tangent Θ₀",
    ("final", "tangent"): "tangent Θ (end)",
}
# The bar of the machine of the infinite-width tangent kernel, the same for both models.
INFINITE_WIDTH_BAR = "tangent Θ∞ (width → ∞)"


def machines_figure(result: ExperimentResult, color: str | None = None) -> go.Figure:
    """Test error % of each network, at its last recorded epoch, beside the test error of the ridge
    machines of its initial and final feature and tangent kernels and of the infinite-width tangent
    kernel Θ∞ (each solved exactly).
    Bars lie along the error axis, each with its value at its end: grouped upright bars of two models
    printed their values into each other ("7.07.0"). `color`: both models in that colour, the slow one
    dotted, for a page whose colours mean runs; by default each model its own colour."""
    fig = go.Figure()
    for name in MODEL_NAMES:
        errors = result.kernel_machine_errors.get(name, {})
        bars = {"network": result.history[name][-1].test_error}
        bars.update(
            {
                label: errors[when][kind]
                for (when, kind), label in MACHINE_BARS.items()
                if when in errors and errors[when][kind] is not None
            }
        )
        if errors and result.infinite_width.get("machine") is not None:
            bars[INFINITE_WIDTH_BAR] = result.infinite_width["machine"]
        marker = dict(color=MODEL_COLORS[name]) if color is None else dict(color=color, pattern=BAR_PATTERN[name])
        fig.add_bar(
            y=list(bars),
            x=list(bars.values()),
            orientation="h",
            name=name,
            marker=marker,
            texttemplate="%{x:.1f}",
            textposition="outside",
            cliponaxis=False,
            hovertemplate=f"{name} · %{{y}}: %{{x:.2f}} % test error<extra></extra>",
        )
    fig.update_layout(
        title="Test error: networks and kernel machines",
        barmode="group",
        height=380,
        xaxis=dict(title="test error %", rangemode="tozero"),
        yaxis=dict(autorange="reversed"),  # the network first, at the top
        legend=LEGEND_BELOW,
        margin=dict(l=50, r=40, t=50, b=40),
    )
    return fig


def undefined_alignment(result: ExperimentResult, name: str) -> tuple[str, str] | None:
    """(epochs, reason) where a model's alignment is undefined, e.g. ("at epochs 3–5", "…")."""
    missing = [r for r in result.history[name] if _finite(r.alignment) is None]
    if not missing:
        return None
    first, last = missing[0].epoch, missing[-1].epoch
    where = f"at epoch {first}" if first == last else f"at epochs {first}–{last}"
    return where, missing[-1].alignment_note or "the value is not a finite number"


def overlay_figure(
    runs: Mapping[str, ExperimentResult], metric: str, title: str, y_title: str, log: bool = False
) -> go.Figure:
    """`metric` of several runs: one colour per run, slow dotted and regular solid; `log` draws it on
    a log axis (where 0, e.g. the start of a change, is a gap)."""
    fig = go.Figure()
    for i, (run, result) in enumerate(runs.items()):
        for name in MODEL_NAMES:
            label = f"{run} · {name}"
            fig.add_traces(_curve(result, name, metric, label, run_color(i), OVERLAY_DASH[name], positive=log))
    if log:
        fig.update_yaxes(**LOG_AXIS)
    return _layout(fig, title, y_title, max((r.epochs_done for r in runs.values()), default=1))


def run_color(index: int) -> str:
    return RUN_COLORS[index % len(RUN_COLORS)]


def block_average(matrix: np.ndarray, max_points: int = DISPLAY_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Average an m×m matrix over b×b blocks so that at most `max_points` remain per side.

    Returns the small matrix and each block's centre in the original index units, so class
    boundaries drawn at original indices stay where they belong.
    """
    m = matrix.shape[0]
    block = max(1, math.ceil(m / max_points))
    starts = np.arange(0, m, block)
    sizes = np.diff(np.append(starts, m))
    summed = np.add.reduceat(np.add.reduceat(matrix.astype(np.float64), starts, axis=0), starts, axis=1)
    return (summed / np.outer(sizes, sizes)).astype(np.float32), starts + (sizes - 1) / 2


def _saturation(*matrices: np.ndarray) -> float:
    """The colour limit: the 99th percentile of |K| over the finite entries of all `matrices` (the
    diagonal, each point with itself, would otherwise set the scale and wash out the class blocks)."""
    finite = np.concatenate([np.abs(m[np.isfinite(m)]) for m in matrices])
    limit = float(np.percentile(finite, SATURATE_PERCENTILE) or finite.max()) if finite.size else 0.0
    return limit or 1.0  # an all-zero or all-undefined kernel


def kernel_figure(kernel: np.ndarray, labels: np.ndarray, digits, title: str, limit: float | None = None) -> go.Figure:
    """A class-sorted kernel as a heatmap, diverging colours centred at 0 (saturating at `limit`,
    by default the kernel's own 99th percentile of |K|), class boundaries drawn."""
    shown, centres = block_average(kernel)
    # A diverged model's kernel may hold inf or NaN: the scale comes from the finite entries alone.
    limit = limit or _saturation(shown)
    m = len(labels)
    fig = go.Figure(
        go.Heatmap(
            z=shown,
            x=centres,
            y=centres,
            colorscale=KERNEL_COLORSCALE,
            zmid=0,
            zmin=-limit,
            zmax=limit,
            colorbar=dict(thickness=10, len=0.8),
            hovertemplate="i %{y:.0f}, j %{x:.0f}: %{z:.3g}<extra></extra>",
        )
    )
    boundaries = np.flatnonzero(labels[1:] != labels[:-1]) + 0.5
    for b in boundaries:
        for axis in ("x", "y"):
            line = dict(x0=b, x1=b, y0=-0.5, y1=m - 0.5) if axis == "x" else dict(y0=b, y1=b, x0=-0.5, x1=m - 0.5)
            fig.add_shape(type="line", line=dict(color="black", width=1), **line)
    edges = np.concatenate([[-0.5], boundaries, [m - 0.5]])
    ticks = dict(tickvals=(edges[:-1] + edges[1:]) / 2, ticktext=[str(digits[c]) for c in np.unique(labels)])
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)),
        xaxis=dict(**ticks, title="digit", constrain="domain", range=[-0.5, m - 0.5]),
        yaxis=dict(**ticks, autorange="reversed", scaleanchor="x", constrain="domain"),
        margin=dict(l=30, r=10, t=50, b=30),
        height=380,
    )
    return fig


# Per kind of kernel: the result's per-epoch stacks, its symbol, the letter of its change K − K₀, and
# the record fields of its ρ and of its distance from initialisation.
KERNEL_KINDS = {
    "feature": ("kernels", "ΦΦᵀ", "K", "alignment", "feature_distance"),
    "tangent": ("tangent_kernels", "Θ", "Θ", "tangent_alignment", "tangent_distance"),
}


def shown_kernels(result: ExperimentResult, epoch: int, kind: str = "feature", change: bool = False) -> dict:
    """Each model's centered kernel of `kind` at `epoch` (a diverged model, or a result that kept
    some epochs' kernels only: the latest kept up to `epoch`), or with `change` its change since
    initialisation K − K₀: {name: (matrix, epoch shown)}."""
    stacks = getattr(result, KERNEL_KINDS[kind][0])
    shown = {}
    for name in MODEL_NAMES:
        kept = result.kept_epochs(name)
        position = max(i for i, kept_epoch in enumerate(kept) if kept_epoch <= epoch)
        matrix = stacks[name][position]
        shown[name] = (matrix - stacks[name][0] if change else matrix, kept[position])
    return shown


def kernel_figures(
    result: ExperimentResult, epoch: int, kind: str = "feature", change: bool = False, shown: dict | None = None
) -> dict[str, go.Figure]:
    """Target YYᵀ and both models' kernels of `kind` ("feature" ΦΦᵀ or "tangent" Θ) at `epoch`; with
    `change`, K − K₀ of both models on one shared colour scale, so that their movement compares.
    `shown`: `shown_kernels` of the same arguments, when the caller has it already."""
    digits, labels = result.config.digits, result.probe_labels
    _, symbol, letter, rho_field, distance_field = KERNEL_KINDS[kind]
    # A comma between what is drawn and its number: "K − K₀ · 1 − ρ" read as a product.
    figures = {"target": kernel_figure(result.target_kernel, labels, digits, "target YYᵀ, ρ = 1")}
    shown = shown if shown is not None else shown_kernels(result, epoch, kind, change)
    limit = _saturation(*(block_average(m)[0] for m, _ in shown.values())) if change else None
    for name, (matrix, at) in shown.items():
        record = result.history[name][at]
        if change:
            distance = _finite(getattr(record, distance_field))
            value = f"1 − ρ({letter}, {letter}₀) = {distance:.2g}" if distance is not None else "not measured"
            title = f"{name} {letter} − {letter}₀, distance {value}"
        else:
            rho = _finite(getattr(record, rho_field))
            title = f"{name} {symbol}, " + (f"ρ = {rho:.3f}" if rho is not None else "ρ undefined")
        title += f" (diverged; epoch {at})" if at < epoch else ""
        figures[name] = kernel_figure(matrix, labels, digits, title, limit)
    return figures


def class_block_means(kernel: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The k×k means of a class-sorted kernel over each (class, class) block, in float64."""
    classes = np.unique(labels)
    onehot = (labels[:, None] == classes[None, :]).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # a diverged run's non-finite kernel: blocks of nan
        sums = onehot.T @ kernel.astype(np.float64) @ onehot
    counts = onehot.sum(axis=0)
    return sums / np.outer(counts, counts)


def block_means_figures(result: ExperimentResult, shown: dict, change: bool = False) -> dict[str, go.Figure]:
    """Class-block means of the target and of each model's kernel in `shown` (see `shown_kernels`);
    with `change`, both models' K − K₀ on one colour scale, as their heatmaps are, so that a model
    whose kernel moved little is pale beside one that moved much."""
    labels, digits = result.probe_labels, result.config.digits
    means = {"target": class_block_means(result.target_kernel, labels)}
    means |= {name: class_block_means(matrix, labels) for name, (matrix, _) in shown.items()}
    shared = _largest(*(means[name] for name in shown)) if change else None
    return {
        name: block_means_figure(
            matrix,
            [str(digits[c]) for c in np.unique(labels)],
            f"{name}: class-block means" + (" of the change" if change and name != "target" else ""),
            limit=shared if name != "target" else None,
        )
        for name, matrix in means.items()
    }


def _largest(*matrices: np.ndarray) -> float:
    """The colour limit of block means: their largest finite |value| (1 where there is none)."""
    finite = np.concatenate([np.abs(m[np.isfinite(m)]) for m in matrices])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def block_means_figure(means: np.ndarray, names: list[str], title: str, limit: float | None = None) -> go.Figure:
    """A small heatmap of class-block means (see `class_block_means`), each value printed, the
    colours saturating at `limit` (by default their own largest |value|)."""
    limit = limit or _largest(means)
    fig = go.Figure(
        go.Heatmap(
            z=means,
            x=names,
            y=names,
            colorscale=KERNEL_COLORSCALE,
            zmid=0,
            zmin=-limit,
            zmax=limit,
            texttemplate="%{z:.3g}",
            showscale=False,
            hovertemplate="digits %{y} and %{x}: mean %{z:.4g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=dict(text=title, font=dict(size=13)),
        height=90 + 30 * len(names),
        margin=dict(l=30, r=10, t=40, b=20),
        xaxis=dict(type="category", constrain="domain"),
        yaxis=dict(type="category", autorange="reversed", scaleanchor="x", constrain="domain"),
    )
    return fig


def lesson_figures(results: list[ExperimentResult], labels: list[str], charts=()) -> list[list[go.Figure]]:
    """A lesson's charts, row by row: one run's error and alignment curves, or several runs overlaid;
    then those `charts` names (lessons.CHARTS): "movement", how far the models moved (hidden weights
    and tangent kernel, log axes); "machines", each run's networks beside its kernel machines;
    "kernel change", the target and each model's K − K₀ (at the last epoch) of the first run on one colour scale;
    "twin", each run's networks beside their linearized twins."""
    runs = dict(zip(labels, results))
    if len(results) == 1:
        rows = [[error_figure(results[0]), alignment_figure(results[0])]]
    else:
        rows = [
            [
                overlay_figure(runs, "test_error", "Test error (slow dotted, regular solid)", "error %"),
                overlay_figure(runs, "alignment", "Alignment ρ (slow dotted, regular solid)", "ρ"),
            ]
        ]
    if "movement" in charts:
        rows.append(
            [movement_figure(results[0])]
            if len(results) == 1
            else [
                overlay_figure(runs, "hidden_change", MEASURE_LABELS["hidden_change"], "relative change", log=True),
                overlay_figure(runs, "tangent_distance", MEASURE_LABELS["tangent_distance"], "distance", log=True),
            ]
        )
    if "machines" in charts:
        # Several runs' curves are coloured by run: so are their bars, the slow model dotted in both.
        several = len(results) > 1
        what = "networks and kernel machines" + (" (slow dotted)" if several else "")
        rows.append(
            [
                machines_figure(result, run_color(i) if several else None).update_layout(
                    title=(title := two_line_title(f"{label}:", what)), margin=dict(t=top_margin(title))
                )
                for i, (label, result) in enumerate(runs.items())
            ]
        )
    if "twin" in charts:
        rows.append(
            [
                twin_figure(result).update_layout(title=f"{label}: networks and their twins")
                for label, result in runs.items()
            ]
        )
    if "kernel change" in charts:
        rows.append(list(kernel_figures(results[0], results[0].epochs_done, change=True).values()))
    return rows


def figures_html(result: ExperimentResult, title: str) -> str:
    """A standalone page (plotly.js embedded, works offline) with the curves and last kernels."""
    figs = [error_figure(result), alignment_figure(result), movement_figure(result)]
    if result.config.linearized_twin:
        figs.append(twin_figure(result))
    if result.kernels[MODEL_NAMES[0]]:
        figs += list(kernel_figures(result, result.epochs_done).values())
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs)]
    config = ", ".join(f"{k}={v}" for k, v in result.config.to_dict().items())
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(config)}</p>{''.join(parts)}</body></html>"
    )


def pair_heatmap(summaries, metric: str, title: str, colorscale=KERNEL_COLORSCALE, zmid=0.0) -> go.Figure:
    """10×10 digit × digit heatmap of `metric`, averaged over the other axes; blank = not run."""
    matrix = pair_matrix(summaries, metric)
    z = [[None if np.isnan(v) else float(v) for v in row] for row in matrix]
    heatmap = go.Heatmap(
        z=z,
        x=list(range(10)),
        y=list(range(10)),
        colorscale=colorscale,
        zmid=zmid,
        hoverongaps=False,
        colorbar=dict(thickness=10),
        hovertemplate="%{y} vs %{x}: %{z:.4g}<extra></extra>",
    )
    fig = go.Figure(heatmap)
    fig.update_layout(
        title=title,
        height=420,
        margin=dict(l=40, r=10, t=50, b=40),
        xaxis=dict(title="digit", dtick=1, constrain="domain"),
        yaxis=dict(title="digit", dtick=1, autorange="reversed", scaleanchor="x"),
    )
    return fig


def sweep_trend_figure(summaries, x: str, line: str, x_title: str, line_title: str, log_x: bool) -> go.Figure:
    """Alignment gain against `x`, one line per value of `line`, mean ± spread over seeds."""
    fig = go.Figure()
    palette = qualitative.Plotly
    for i, value in enumerate(sorted({getattr(s, line) for s in summaries})):
        stats = mean_spread([s for s in summaries if getattr(s, line) == value], x)
        fig.add_scatter(
            x=list(stats),
            y=[m for m, _, _ in stats.values()],
            name=f"{line_title} {value:g}",
            mode="lines+markers",
            line=dict(color=palette[i % len(palette)]),
            error_y=dict(type="data", array=[sd for _, sd, _ in stats.values()]),
            customdata=[n for _, _, n in stats.values()],
            hovertemplate=f"{x_title} %{{x:g}}: %{{y:.4f}} ± %{{error_y.array:.4f}} "
            "(%{customdata} seeds)<extra></extra>",
        )
    fig.add_hline(y=0, line=dict(color="gray", width=1, dash="dot"))
    fig.update_layout(
        title=f"Alignment gain vs {x_title} (mean ± spread over seeds)",
        height=380,
        xaxis=dict(
            title=x_title, type="log" if log_x else "linear", tickvals=sorted({getattr(s, x) for s in summaries})
        ),
        yaxis=dict(title="alignment gain"),
        legend=LEGEND_BELOW,
        margin=dict(l=50, r=20, t=50, b=40),
    )
    return fig


# The width lab: a colour per parametrization, a dash per model ("init": the start both share).
PARAMETRIZATION_COLORS = {"standard": "#7f7f7f", "ntk": "#1f77b4", "mup": "#d62728"}
WIDTH_DASH = {"slow": "dot", "regular": "solid", "init": "dash", None: "solid"}


def width_figure(lines: list[WidthLine], title: str, y_title: str) -> go.Figure:
    """`lines` (width_lab.width_lines) against width on log-log axes, mean ± spread over seeds, each
    named with its fitted slope (and the theory's, where there is one). The value axis is linear
    when a mean is not positive (an alignment gain can be negative: no logarithm)."""
    fig = go.Figure()
    for line in lines:
        model = "" if line.model is None else f" · {line.model}"
        fig.add_scatter(
            x=line.widths,
            y=line.means,
            name=f"{line.parametrization}{model}: {short_slope_text(line)}",
            mode="lines+markers",
            line=dict(color=PARAMETRIZATION_COLORS[line.parametrization], dash=WIDTH_DASH[line.model]),
            error_y=dict(type="data", array=line.spreads),
            customdata=line.seeds,
            hovertemplate="width %{x}: %{y:.4g} ± %{error_y.array:.2g} (%{customdata} seeds)<extra></extra>",
        )
    widths = sorted({w for line in lines for w in line.widths})
    positive = all(mean > 0 for line in lines for mean in line.means)
    fig.update_layout(
        title=title,
        height=420,
        xaxis=dict(title="hidden width", type="log", tickvals=widths),
        yaxis=dict(title=y_title, **(LOG_AXIS if positive else {"type": "linear"})),
        legend=LEGEND_BELOW,
        margin=dict(l=60, r=20, t=50, b=40),
    )
    return fig


def setting_figure(
    rows: list[dict], setting: str, measure: str, x_title: str, y_title: str, x_axis: str, log: bool = False
) -> go.Figure:
    """`measure` at each run's last epoch against `setting`, one point per run and model (the
    models' colours; rows are measure_table.final_rows), hovering with the run's name. `x_axis`:
    "log", "linear" or "category" (measure_table.setting_axis). Undefined values are left out; with
    `log` the value axis is logarithmic where every value left is positive."""
    fig = go.Figure()
    for name in MODEL_NAMES:
        shown = [row for row in rows if row["model"] == name and row[measure] is not None]
        fig.add_scatter(
            x=[row[setting] for row in shown],
            y=[row[measure] for row in shown],
            name=name,
            mode="markers",
            marker=dict(color=MODEL_COLORS[name], size=9, symbol="circle-open" if name == "slow" else "circle"),
            customdata=[[row["run"], row["epoch"]] for row in shown],
            hovertemplate=f"%{{customdata[0]}} · {name}<br>{x_title} %{{x}}: %{{y:.4g}} "
            "(epoch %{customdata[1]})<extra></extra>",
        )
    values = [row[measure] for row in rows if row[measure] is not None]
    x_values = sorted({row[setting] for row in rows}, key=str if x_axis == "category" else None)
    title = two_line_title(y_title, f"at the last epoch, against {x_title.lower()}")
    fig.update_layout(
        title=title,
        height=380,
        xaxis=dict(
            title=x_title,
            type=x_axis,
            **({"categoryorder": "array", "categoryarray": x_values} if x_axis == "category" else {}),
            **({"tickvals": x_values} if x_axis == "log" else {}),
        ),
        yaxis=dict(**(LOG_AXIS if log and values and min(values) > 0 else {"type": "linear"})),
        legend=LEGEND_BELOW,
        margin=dict(l=50, r=20, t=top_margin(title), b=40),
        hovermode="closest",
    )
    return fig


def kernel_change_pair(results: Mapping[str, ExperimentResult], model: str) -> dict[str, go.Figure]:
    """`model`'s feature kernel change K − K₀ at the last epoch of each run (the last it kept), side by
    side on ONE colour scale, symmetric around 0, so that a run whose kernel moved little is pale beside
    one that moved much. Every result must hold its kernels."""
    shown = {run: shown_kernels(result, result.epochs_done, change=True)[model] for run, result in results.items()}
    limit = _saturation(*(block_average(matrix)[0] for matrix, _ in shown.values()))
    return {
        run: kernel_figure(
            matrix,
            result.probe_labels,
            result.config.digits,
            f"{run}: {model} K − K₀ (epoch {at})",
            limit,
        )
        for (run, (matrix, at)), result in zip(shown.items(), results.values())
    }


def coordinate_figure(lines: list[WidthLine], measure: Measure) -> go.Figure:
    """μP's coordinate check as mup draws it: one panel per parametrization, `measure` against width
    on log-log axes, one line per time (t = 0 … 4 steps, then the end), the later the darker; every
    panel on one value axis, so that sizes compare across parametrizations."""
    parametrizations = list(dict.fromkeys(line.parametrization for line in lines))
    times = list(dict.fromkeys(line.model for line in lines))
    fig = make_subplots(rows=1, cols=len(parametrizations), subplot_titles=parametrizations, shared_yaxes=True)
    for line in lines:
        column = parametrizations.index(line.parametrization) + 1
        shade = 0.25 + 0.75 * times.index(line.model) / max(1, len(times) - 1)
        fig.add_scatter(
            x=line.widths,
            y=line.means,
            name=f"{line.parametrization}, {measure.model_label(line.model)}: {short_slope_text(line)}",
            legendgroup=line.model,
            mode="lines+markers",
            line=dict(color=f"rgba(31, 119, 180, {shade:.2f})", dash="dash" if line.model == "init" else "solid"),
            error_y=dict(type="data", array=line.spreads),
            customdata=line.seeds,
            hovertemplate=f"{line.parametrization}, {measure.model_label(line.model)}, "
            + "width %{x}: %{y:.4g} ± %{error_y.array:.2g} (%{customdata} seeds)<extra></extra>",
            row=1,
            col=column,
        )
    widths = sorted({w for line in lines for w in line.widths})
    fig.update_xaxes(title="hidden width", type="log", tickvals=widths)
    fig.update_yaxes(title=measure.label, col=1)
    fig.update_yaxes(**LOG_AXIS)
    fig.update_layout(
        title=f"{measure.label} vs width, after t SGD steps",
        height=420,
        legend=LEGEND_BELOW,
        margin=dict(l=60, r=20, t=70, b=40),
    )
    return fig
