"""Training engine for BTS: setup functions, the train step, handlers and checkpoints (pytorch-ignite)."""
