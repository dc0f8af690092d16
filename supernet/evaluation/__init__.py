"""Evaluation: BN re-calibration, scoring subnets, the supernet oracle, sensitivity."""
