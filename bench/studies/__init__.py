"""Named studies: each claim of the ML-Decoder paper as data (a base configuration and a grid of variations,
like asv's parameter grids), run through the same runner and results store as ``bench run``.

A study's rows go to ``<results-dir>/study-<name>.csv``; cells already there are not run again, so an
interrupted study resumes where it stopped.

Budget: the whole set with 5 seeds is estimated at about 69 min on the 2-core CPU machine (threads 2, quiet):
per-cell training seconds taken from the committed 2-3-seed rows (`train_s`: 96 px scenes cells 22-30 s, 64 px
10-32 s, 128 px 35-41 s, Fashion-MNIST 9-13 s, the tiny ViT 5.5/12 s at 5 epochs, x3 at 15), times 5 seeds, gives
~3480 s of training; the rows' first-to-last timestamps were 1.04-1.07x their summed train_s (evaluation, data),
and the cost cells took ~400 s. Keep new grids within the ~20 min left of the 90 min budget.
"""
from ._base import (  # noqa: F401  (the study API, re-exported)
    ABOVE_CHANCE, DATA_OPTIONS, EMOJI, FASHION, LITES, PRETRAINED, PROXY, RUNGS, SETTING, SMALL, STUDIES, Hypothesis,
    Study, get_study, grid, list_studies, register_study,
)

# The studies, one small file each (explicit list: no directory scanning).
from . import (  # noqa: E402,F401
    compute, self_attention, groups, classes, queries, backbone_vs_head, zsl, drop_in, pooling, probing,
)
