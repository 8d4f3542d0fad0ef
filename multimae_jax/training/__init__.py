"""Optimizer, sharding, train step, checkpoints, metric logging and the training loop."""
