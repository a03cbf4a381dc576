"""headbench: is this classification head worth its cost?

Heads (``bench.heads``) and datasets (``bench.datasets``) are registries of small modules; ``bench.backbones.model``
joins a timm backbone and a head; the rest measures cost and accuracy and turns results into tables and plots.
"""
__version__ = "0.1.0"
