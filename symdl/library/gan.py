"""GAN costs: the discriminator's and the generator's, on probabilities and on logits.

The costs are defined once, on discriminator probabilities D in [0, 1]; the logit
versions substitute D = sigmoid(l) (the library's sigmoid). SymPy derives every
gradient, and the stable rewrites (``symdl.stable``) turn log(sigmoid(l)) into
-softplus(-l) for the kernels.
"""

import dataclasses

import sympy as sp

from symdl.derive import gradient_formula
from symdl.formula import BatchReduction, SampleBatch
from symdl.library.activations import sigmoid
from symdl.sheet import Plot

SECTION = "GAN costs"

d_real, d_fake = sp.symbols("d_real d_fake", real=True)
l_real, l_fake = sp.symbols("l_real l_fake", real=True)
m_real, m_fake = sp.symbols("m_real m_fake", integer=True, positive=True)
s_real, s_fake = sp.symbols("s_real s_fake", real=True)

PROB = "probability"

gan_d_loss = BatchReduction(
    "gan_d_loss",
    SECTION,
    "Discriminator cost",
    "The discriminator's cross-entropy on a batch of real samples x (D(x) = `d_real`) "
    "and a batch of generated samples G(z) (D(G(z)) = `d_fake`), each averaged over its "
    "own batch.",
    batches=[SampleBatch(m_real, [d_real]), SampleBatch(m_fake, [d_fake])],
    sums={"s_real": sp.log(d_real), "s_fake": sp.log(1 - d_fake)},
    outputs={"J_D": -s_real / m_real - s_fake / m_fake},
    domains={"d_real": PROB, "d_fake": PROB},
    gradient=True,
)

gan_g_loss_saturating = BatchReduction(
    "gan_g_loss_saturating",
    SECTION,
    "Generator cost, saturating",
    "The minimax generator cost, which the generator minimizes.",
    batches=[SampleBatch(m_fake, [d_fake])],
    sums={"s_fake": sp.log(1 - d_fake)},
    outputs={"J_G": s_fake / m_fake},
    domains={"d_fake": PROB},
    gradient=True,
)

gan_g_loss_nonsaturating = BatchReduction(
    "gan_g_loss_nonsaturating",
    SECTION,
    "Generator cost, non-saturating",
    "Instead of minimizing the saturating cost, the generator maximizes the "
    "log-probability that the discriminator gives its samples.",
    batches=[SampleBatch(m_fake, [d_fake])],
    sums={"s_fake": sp.log(d_fake)},
    outputs={"J_G": -s_fake / m_fake},
    domains={"d_fake": PROB},
    gradient=True,
)

_LOGIT = {d_real: l_real, d_fake: l_fake}


def on_logits(f: BatchReduction) -> BatchReduction:
    """The same cost with D = sigmoid(l) substituted: a new formula named <name>_logits."""
    (x,) = sigmoid.inputs
    (y,) = sigmoid.outputs.values()
    subs = {d: y.subs(x, lg) for d, lg in _LOGIT.items()}
    return BatchReduction(
        f"{f.name}_logits",
        f.section,
        f"{f.title}, on logits",
        "As above, on discriminator logits l with D = sigmoid(l).",
        batches=[SampleBatch(b.count, [_LOGIT[s] for s in b.inputs]) for b in f.batches],
        sums={k: e.subs(subs) for k, e in f.sums.items()},
        outputs=dict(f.outputs),
        gradient=f.gradient,
    )


PROBABILITY_COSTS = [gan_d_loss, gan_g_loss_saturating, gan_g_loss_nonsaturating]
LOGIT_COSTS = [on_logits(f) for f in PROBABILITY_COSTS]


def _per_sample_gradient(f: BatchReduction) -> sp.Expr:
    """d cost / d l for a batch of one sample, from the SymPy-derived gradient formula."""
    (g,) = gradient_formula(f).outputs.values()
    return g.subs(m_fake, 1)


def _why_non_saturating() -> str:
    """The note on the non-saturating cost, with the gradients' limits where D(G(z)) -> 0
    (l tends to minus infinity) taken by SymPy from the derived gradients."""
    saturating, non_saturating = (sp.limit(_per_sample_gradient(f), l_fake, -sp.oo)
                                  for f in LOGIT_COSTS[1:])
    return ("Why the non-saturating cost: early in training the discriminator rejects "
            "generated samples easily, D(G(z)) is near 0, and there the saturating cost's "
            f"gradient with respect to the logit tends to {saturating}, while the "
            f"non-saturating one tends to {non_saturating} (the limits as l tends to "
            "minus infinity, taken by SymPy; see the plot below). Both costs have the same "
            "fixed point D(G(z)) = 1/2 (Goodfellow et al., 2014).")


gan_g_loss_nonsaturating = dataclasses.replace(gan_g_loss_nonsaturating,
                                               notes=(_why_non_saturating(),))
PROBABILITY_COSTS[2] = gan_g_loss_nonsaturating

PLOTS = [
    Plot(
        "Generator gradients with respect to the logit l = logit D(G(z)), for one sample: "
        "the saturating one vanishes where D(G(z)) is near 0 (l very negative), "
        "the non-saturating one does not.",
        x=l_fake,
        domain=(-8.0, 8.0),
        curves=[("saturating", _per_sample_gradient(LOGIT_COSTS[1])),
                ("non-saturating", _per_sample_gradient(LOGIT_COSTS[2]))],
        legend="outer north east",
        ylabel="gradient of the cost",
    )
]

FORMULAS = PROBABILITY_COSTS + LOGIT_COSTS
