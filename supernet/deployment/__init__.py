"""Deployment: ONNX export, packed weights, integer graphs and runtime latency."""
