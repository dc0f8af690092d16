"""Elastic quantization supernets: build, quantize, train, calibrate, evaluate, export."""

from supernet.deployment.export import export_onnx
from supernet.evaluation.oracle import SupernetOracle
from supernet.files.checkpoint import load_supernet, save_supernet
from supernet.networks.build import build_supernet
from supernet.networks.calibrate import calibrate_bn
from supernet.networks.elastic import Supernet, to_supernet
from supernet.networks.layers import ElasticQuantConv2d, ElasticQuantLayer, ElasticQuantLinear
from supernet.networks.models import MODELS, create_model
from supernet.networks.quant_init import init_quantizers
from supernet.networks.rebuild import rebuild_supernet
from supernet.quantizers import QUANTIZERS, QuantizerSpec
from supernet.training.config import TrainConfig
from supernet.training.loop import train_supernet

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
