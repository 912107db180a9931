"""Strategies: how a long input reaches the model. One strategy per file; see `base.Strategy`."""
