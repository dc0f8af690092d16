"""Latency as data: machine fingerprints, what a runtime runs, and measured latency tables."""

from eqsearch.latency.fingerprint import MeasurementKey, machine_key
from eqsearch.latency.kernels import KernelTable, ProbeCell
from eqsearch.latency.table import LatencyTable

__all__ = [
    "KernelTable",
    "LatencyTable",
    "MeasurementKey",
    "ProbeCell",
    "machine_key",
]
