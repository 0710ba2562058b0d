"""Kernels page: the target kernel and both models' centered feature or tangent kernels, epoch by
epoch, or their change since initialisation on one colour scale, with class-block means."""

import streamlit as st

from kalign_app import figures, navigation, ui
from kalign_core import runs
from kalign_core.results import MODEL_NAMES

navigation.require_app()

KINDS = {"feature": "feature ΦΦᵀ", "tangent": "tangent Θ"}

st.title("Kernels")
st.caption(
    "Centered kernels on the probe digits, sorted by class (black lines mark class boundaries; red is "
    "positive, blue negative, white 0). A kernel aligned with the task shows the target's block pattern."
)
result = ui.current_result()
ui.run_state(result)
if result is not None and not result.kernels[MODEL_NAMES[0]]:
    st.info(
        "This run has no kernels: it was opened from a run JSON alone. Upload its kernels .npz with it "
        "on the Runs page to see them."
    )
elif result is not None:
    # The epochs of the model that recorded most (the other may have diverged earlier).
    epochs = max((result.kept_epochs(name) for name in MODEL_NAMES), key=lambda kept: kept[-1])
    if st.session_state.get("kernel_epoch", 0) not in epochs:
        del st.session_state["kernel_epoch"]  # the slider's old value belongs to another run
    if result.kernel_epochs:
        st.caption(
            f"This sweep kept the kernels of epochs {' and '.join(map(str, epochs))} only (each trial's first "
            "and last); its histories have every epoch. A sweep run with `--keep all` (or “keep every "
            "epoch's kernels and the weights” ticked) keeps them all."
        )
    label = "Epoch (0 = initialisation)"
    if len(epochs) < 2:
        epoch = 0
    elif result.kernel_epochs:
        epoch = st.select_slider(label, epochs, value=epochs[-1], key="kernel_epoch")
    else:
        epoch = st.slider(label, 0, epochs[-1], value=epochs[-1], key="kernel_epoch")
    choice, view = st.columns(2)
    kind = choice.radio(
        "Kernel",
        list(KINDS),
        format_func=KINDS.get,
        horizontal=True,
        key="kernel_kind",
        help="the feature kernel is what the readout sees; the tangent kernel Θ is what gradient "
        "descent on every weight sees (it stays fixed in the lazy regime)",
    )
    if kind == "tangent" and not result.tangent_kernels[MODEL_NAMES[0]]:
        st.info(
            "Tangent kernels are kept for runs trained since the server started, not in saved or uploaded "
            "runs: showing the feature kernels.",
            icon=":material/info:",
        )
        kind = "feature"
    letter = figures.KERNEL_KINDS[kind][2]  # K for the feature kernel, Θ for the tangent kernel
    moved = f"{letter} − {letter}₀"
    change = view.toggle(
        f"Change since initialisation, {moved}",
        key="kernel_change",
        help="both models on one colour scale, so their movement compares",
    )
    m = len(result.probe_labels)
    if m > figures.DISPLAY_POINTS:
        st.caption(
            f"{m} probe points: shown block-averaged to at most {figures.DISPLAY_POINTS} per side; "
            "the download has the full matrices."
        )
    if change:
        st.caption(
            f"{moved} of both models share one colour scale, and so do their class-block means: a pale map moved "
            "little. Centered kernels: the change leaves out what all probe digits share; it includes any change "
            "in the kernel's scale."
        )
    shown = figures.shown_kernels(result, epoch, kind, change)
    columns = st.columns(3)
    for column, (name, figure) in zip(columns, figures.kernel_figures(result, epoch, kind, change, shown).items()):
        column.plotly_chart(figure, key=f"kernel_{name}")
    for column, (name, figure) in zip(columns, figures.block_means_figures(result, shown, change).items()):
        column.plotly_chart(figure, key=f"block_means_{name}")
    st.download_button(
        "Download the full kernels of every epoch kept (.npz)",
        data=lambda: runs.kernels_to_npz(result),
        file_name="kalign-kernels.npz",
        mime="application/octet-stream",
        on_click="ignore",
        icon=":material/download:",
    )
