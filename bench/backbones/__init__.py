"""Backbones: timm models with a head put on them, checkpoints, offline ImageNet weights."""
