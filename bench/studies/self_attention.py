"""Claim 1: removing self-attention keeps accuracy and turns the head's cost from quadratic to linear in the
number of queries."""
from ._base import PROXY, SETTING, SMALL, Hypothesis, Study, register_study

NUM_QUERIES = [80, 400, 1000, 2000, 5000, 10000]
PLAIN, WITH_SA, TXDEC = f"mldecoder({SMALL})", f"mldecoder({SMALL}, self_attn=True)", f"txdec({SMALL})"


def _heads(cfg):
    n = cfg["num_classes"]
    return [f"mldecoder(groups={n})", f"mldecoder(groups={n}, self_attn=True)", "txdec"]


STUDY = register_study(Study(
    name="self-attention",
    claim=1,
    statement="Removing self-attention keeps accuracy and turns the head's cost from quadratic to linear in the "
              "number of queries.",
    paper="Section 3: with self-attention the decoder's cost grows quadratically with the queries; removing it "
          "'does not degrade results' (COCO ablation) while making the head linear in the queries.",
    base=dict(PROXY),
    variations=[dict(backbones=["tresnet_m"], img_size=448, batch_sizes=[1], timing=True, cost_only=True,
                     num_classes=n, heads=_heads) for n in NUM_QUERIES]
    + [dict(heads=[PLAIN, WITH_SA, TXDEC])],
    notes="Full decoding (one query per class, K = N) so that the number of queries is N. txdec is the full "
          "decoder (self-attention, learnable queries). In eval mode the first layer's self-attention acts on "
          "image-independent queries, so this suite computes it once per batch; at batch 1 (as here) it is paid "
          "once per image, which is the cost the paper argues about.",
    hypotheses=[
        Hypothesis(name="without vs with self-attention",
                   statement="ML-Decoder without self-attention loses less than 1 mAP point against the same head "
                             "with it",
                   variant={"head": PLAIN}, reference={"head": WITH_SA}, test="not_worse", margin=1.0,
                   per=SETTING),
        Hypothesis(name="ML-Decoder vs the full decoder",
                   statement="ML-Decoder loses less than 1 mAP point against the full transformer decoder "
                             "(self-attention, learnable queries, one per class)",
                   variant={"head": PLAIN}, reference={"head": TXDEC}, test="not_worse", margin=1.0, per=SETTING),
    ],
    # Cost rule: log-log slope of head GMACs against N between the two largest N.
    cost_rules=dict(linear_max_slope=1.3, quadratic_min_slope=1.5),
))
