"""Training and evaluation: protocols, the feature cache, losses, the k-NN baseline, DDP."""
