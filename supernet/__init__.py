"""Elastic quantization supernets: build, quantize, train, calibrate, evaluate, export."""

from supernet.calibrate import calibrate_bn
from supernet.checkpoint import load_supernet, save_supernet
from supernet.elastic import Supernet, build_supernet, to_supernet
from supernet.export import export_onnx
from supernet.layers import ElasticQuantConv2d, ElasticQuantLayer, ElasticQuantLinear
from supernet.models import MODELS, create_model
from supernet.oracle import SupernetOracle
from supernet.quant_init import init_quantizers
from supernet.quantizers import QUANTIZERS, QuantizerSpec
from supernet.rebuild import rebuild_supernet
from supernet.train import TrainConfig, train_supernet

__all__ = [
    "MODELS",
    "QUANTIZERS",
    "ElasticQuantConv2d",
    "ElasticQuantLayer",
    "ElasticQuantLinear",
    "QuantizerSpec",
    "Supernet",
    "SupernetOracle",
    "TrainConfig",
    "build_supernet",
    "calibrate_bn",
    "create_model",
    "export_onnx",
    "init_quantizers",
    "load_supernet",
    "rebuild_supernet",
    "save_supernet",
    "to_supernet",
    "train_supernet",
]
