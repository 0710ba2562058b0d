"""Kernels page: the target kernel and both models' centered feature kernels, epoch by epoch."""

import streamlit as st

import ui
from kalign_core import figures, runs
from kalign_core.training import MODEL_NAMES

ui.require_app()

st.title("Kernels")
st.caption(
    "Centered kernels on the probe digits, sorted by class (black lines mark class boundaries; red is "
    "positive, blue negative, white 0). A kernel aligned with the task shows the target's block pattern."
)
result = ui.current_result()
if ui.current_job() is not None:
    st.info("A run is training: this page shows it as soon as it finishes.", icon=":material/hourglass_top:")
if result is None:
    ui.no_run_yet()
elif not result.kernels[MODEL_NAMES[0]]:
    st.info("This run has no kernels: it was opened from a run JSON alone. Upload its kernels .npz with it "
            "on the Runs page to see them.")
else:
    last = max(len(result.kernels[name]) for name in MODEL_NAMES) - 1
    if st.session_state.get("kernel_epoch", 0) > last:
        del st.session_state["kernel_epoch"]  # the slider's old value belongs to a longer run
    epoch = st.slider("Epoch (0 = initialisation)", 0, last, value=last, key="kernel_epoch") if last > 0 else 0
    m = len(result.probe_labels)
    if m > figures.DISPLAY_POINTS:
        st.caption(f"{m} probe points: shown block-averaged to at most {figures.DISPLAY_POINTS} per side; "
                   "the download has the full matrices.")
    for column, (name, figure) in zip(st.columns(3), figures.kernel_figures(result, epoch).items()):
        column.plotly_chart(figure, key=f"kernel_{name}")
    st.download_button(
        "Download the full kernels of every epoch (.npz)",
        data=lambda: runs.kernels_to_npz(result),
        file_name="kalign-kernels.npz",
        mime="application/octet-stream",
        on_click="ignore",
        icon=":material/download:",
    )
