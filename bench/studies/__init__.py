"""Named studies: each claim of the ML-Decoder paper as data (a base configuration and a grid of variations,
like asv's parameter grids), run through the same runner and results store as ``bench run``.

A study's rows go to ``<results-dir>/study-<name>.csv``; cells already there are not run again, so an
interrupted study resumes where it stopped.
"""
from ._base import (  # noqa: F401  (the study API, re-exported)
    DATA_OPTIONS, PROXY, SMALL, STUDIES, Hypothesis, Study, get_study, grid, list_studies, register_study,
)

# The studies, one small file each (explicit list: no directory scanning).
from . import (  # noqa: E402,F401
    compute, self_attention, groups, classes, queries, backbone_vs_head, zsl, drop_in, pooling,
)
