"""Elastic quantization supernets: build, quantize, train, calibrate, evaluate, export."""

from supernet.elastic import Supernet, build_supernet, rebuild_supernet, to_supernet
from supernet.export import export_onnx
from supernet.layers import ElasticQuantConv2d, ElasticQuantLayer, ElasticQuantLinear
from supernet.models import MODELS, create_model
from supernet.quant_init import init_quantizers
from supernet.quantizers import QUANTIZERS, QuantizerSpec

__all__ = [
    "MODELS",
    "QUANTIZERS",
    "ElasticQuantConv2d",
    "ElasticQuantLayer",
    "ElasticQuantLinear",
    "QuantizerSpec",
    "Supernet",
    "build_supernet",
    "create_model",
    "export_onnx",
    "init_quantizers",
    "rebuild_supernet",
    "to_supernet",
]
