"""Experiments built on the library: predictor comparison, loss-weight tuning, ablations."""
