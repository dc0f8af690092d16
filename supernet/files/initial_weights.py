"""``train --init``: full-precision weights from an eqsearch checkpoint or a user's state_dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from eqsearch.errors import InputError
from supernet.files.checkpoint import (
    FORMAT_NAME,
    check_finite_weights,
    load_checkpoint,
    safe_torch_load,
)
from supernet.networks.elastic import Supernet

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
"""Keys under which training scripts nest the weights (Lightning, torchvision's references,
DDP scripts), looked up in this order; at most :data:`MAX_NESTING` levels deep."""
MAX_NESTING = 3
PREFIXES = ("module.", "_orig_mod.", "model.")
"""Leading name parts that wrappers add to every key (DDP, torch.compile, a LightningModule's
``self.model``); each is removed while every key carries it and the model's own keys do not."""


def load_initial_weights(
    supernet: Supernet, path: str | Path, *, skip_head: bool = False, flag: str = "--init"
) -> None:
    """Load full-precision weights into ``supernet`` (its quantizers are left as they are).

    Reads an eqsearch ``fp.pt``/``supernet.pt``, or a state_dict of the supernet's model as
    torchvision and training scripts save it: torchvision's hub files (with or without the BN
    layers' ``num_batches_tracked`` counters, which are kept at the model's own values when
    absent), nested under ``state_dict``/``model``/... (see :data:`WRAPPER_KEYS`), and with
    ``module.`` (DDP) or ``_orig_mod.`` (torch.compile) prefixes (see :data:`PREFIXES`).

    Args:
        supernet: the freshly built supernet.
        path: the file.
        skip_head: leave the classifier (the last layer with a weight matrix) as initialised,
            for weights trained on another number of classes (ImageNet's 1000).
        flag: the option that named the file, for the messages (``eval --supernet``).

    Raises:
        InputError: one line naming the file and the first key that does not fit (missing,
            unexpected, another shape, not finite), or a file that holds no state_dict.
    """
    name = str(path)
    payload = safe_torch_load(path, what="state_dict")
    target: nn.Module
    if isinstance(payload, dict) and payload.get("format") == FORMAT_NAME:
        payload = load_checkpoint(path)  # the checks of an eqsearch checkpoint
        if payload.get("complete") is False:
            raise InputError(
                f"{flag} {name} is an unfinished pretraining (epoch {payload.get('fp_epoch')} "
                f"of {(payload.get('train_config') or {}).get('fp_epochs')}); continue its run "
                "with eqsearch train --resume --out <its directory>"
            )
        state, target = payload["state_dict"], supernet
    else:
        state, target = _unwrap(payload, f"{flag} {name}"), supernet.model
    own = target.state_dict()
    state = _strip_prefixes(state, own)
    model = supernet.build_info.get("model", "the model")
    if skip_head:
        head = _head_keys(target, int(supernet.build_info.get("num_classes", 0)))
        state = {key: value for key, value in state.items() if key not in head}
    else:
        head = set()
    # Quantizer entries are not model weights (another quantizer's, from an fp.pt of another
    # run); init_quantizers sets this run's from data.
    model_keys = {key for key in own if ".quantizer." not in key}
    missing = sorted(
        key for key in model_keys - set(state) - head if not key.endswith(".num_batches_tracked")
    )
    unexpected = sorted(key for key in state if key not in own and ".quantizer." not in key)
    if missing or unexpected:
        raise InputError(
            f"{flag} {name} does not fit the {model} architecture "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    wrong = [key for key, value in state.items() if key in own and value.shape != own[key].shape]
    if wrong:
        key = wrong[0]
        hint = (
            "; --init-skip-head leaves out a classifier trained on another number of classes"
            if not skip_head and flag == "--init" and key in _head_keys(target, 0)
            else ""
        )
        raise InputError(
            f"{flag} {name} does not fit the {model} architecture ({key} has shape "
            f"{tuple(state[key].shape)}, the model {tuple(own[key].shape)}){hint}"
        )
    check_finite_weights(state, name)
    target.load_state_dict({key: value for key, value in state.items() if key in own}, strict=False)


def _unwrap(payload: Any, named: str) -> dict[str, torch.Tensor]:
    """The state_dict inside ``payload`` (itself, or nested under a :data:`WRAPPER_KEYS` key)."""
    for _ in range(MAX_NESTING + 1):
        if _is_state_dict(payload):
            return dict(payload)
        if not isinstance(payload, dict):
            break
        inner = next(
            (payload[key] for key in WRAPPER_KEYS if isinstance(payload.get(key), dict)), None
        )
        if inner is None:
            break
        payload = inner
    raise InputError(
        f"{named} is neither an eqsearch checkpoint nor a state_dict (a dict of tensors, "
        f"or one under {', '.join(repr(key) for key in WRAPPER_KEYS)})"
    )


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _strip_prefixes(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``state`` without the :data:`PREFIXES` every one of its keys carries (in any order and
    repetition), unless the model's own keys carry that prefix too."""
    while True:
        prefix = next(
            (
                p
                for p in PREFIXES
                if all(key.startswith(p) for key in state)
                and not all(key.startswith(p) for key in own)
            ),
            None,
        )
        if prefix is None:
            return state
        state = {key[len(prefix) :]: value for key, value in state.items()}


def _head_keys(model: nn.Module, num_classes: int) -> set[str]:
    """State keys of the classifier: the last module with a weight matrix, preferring one with
    ``num_classes`` outputs (0: any), under every name the module is registered by."""
    layers = [
        (module, weight)
        for module in model.modules()
        if isinstance(weight := getattr(module, "weight", None), torch.Tensor) and weight.ndim >= 2
    ]
    if not layers:
        return set()
    fitting = [(m, w) for m, w in layers if num_classes and w.shape[0] == num_classes]
    head = (fitting or layers)[-1][0]
    return {
        f"{name}.{key}" if name else key
        for name, module in model.named_modules(remove_duplicate=False)
        if module is head
        for key, _ in module.named_parameters(recurse=False)
    }
