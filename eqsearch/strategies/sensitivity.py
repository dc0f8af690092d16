"""Per-layer sensitivities: how much each elastic layer at each bit width costs in accuracy."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from eqsearch.errors import InputError, warn
from eqsearch.files import atomic_write_text, file_sha256, read_json
from eqsearch.oracle import AccuracyOracle
from eqsearch.space import ALL_FORMS, ConfigBatch, ElasticSpace, QuantForm
from eqsearch.strategies.front import concatenate

FloatArray = npt.NDArray[np.float64]

METHODS = ("hessian", "measured", "given")
"""Where sensitivities come from: HAWQ's Hessian trace times the quantization error, the
supernet's measured accuracy drop with one layer lowered, or arrays a caller supplies."""

FORMAT_NAME = "eqsearch-sensitivities"
FORMAT_VERSION = 1

MAX_SENSITIVITY = 1e15
"""Largest magnitude of a sensitivity: sums over every layer stay far inside what the MILP
solver takes as a finite cost (1e20)."""


def require_fixed_architecture(space: ElasticSpace, what: str) -> None:
    """Raise ValueError when ``space`` carries architecture genes.

    Sensitivities and the strategies built on them choose bits (and forms) per layer of one
    architecture; a joint architecture × quantization space has layers that come and go.
    """
    if bool(getattr(space, "is_joint", False)) or bool(getattr(space, "genes", ())):
        raise InputError(
            f"{what} chooses the bits of a fixed architecture; this space has architecture "
            "genes (a joint space): search it with nsga"
        )


def _array(values: npt.ArrayLike, shape: tuple[int, ...], name: str) -> FloatArray:
    array = np.array(values, dtype=np.float64)
    if array.shape != shape:
        raise InputError(f"Sensitivities.{name} must have shape {shape}; got {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"Sensitivities.{name} must hold finite numbers")
    if array.size and np.abs(array).max() > MAX_SENSITIVITY:
        raise InputError(
            f"Sensitivities.{name} holds absurd values (up to {np.abs(array).max():.3g}; "
            f"sensitivities are at most {MAX_SENSITIVITY:.0e} in size)"
        )
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class Sensitivities:
    """Per form, elastic layer and bit width: the cost of quantizing that layer to those bits.

    Rows follow the space's elastic layers (``space.elastic_indices``), columns its bit widths
    in ascending order. A config's sensitivity is the sum over its elastic layers of the weight
    entry at its weight bits plus the activation entry at its activation bits (the strategies'
    additive model). Larger means more damage; the unit depends on the method (percentage
    points of accuracy for ``measured``, second-order loss increase for ``hessian``).

    Args:
        space_fingerprint: the fingerprint of the space the values belong to.
        method: one of :data:`METHODS`.
        forms: the forms the arrays cover, in order.
        weight: ``(len(forms), n_elastic, len(space.w_bits))``.
        activation: ``(len(forms), n_elastic, len(space.a_bits))``.
        info: JSON-able facts (seed, images, measurements, seconds, standard errors, ...).
    """

    space_fingerprint: str
    method: str
    forms: tuple[QuantForm, ...]
    weight: FloatArray
    activation: FloatArray
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(
                f"Sensitivities.method must be one of {', '.join(METHODS)}; got {self.method!r}"
            )
        forms = tuple(self.forms)
        if not forms or not all(isinstance(form, QuantForm) for form in forms):
            raise InputError("Sensitivities.forms must hold at least one QuantForm")
        if len(set(forms)) != len(forms):
            raise InputError("Sensitivities.forms must not repeat a form")
        weight = np.asarray(self.weight)
        if weight.ndim != 3:
            raise InputError(
                f"Sensitivities.weight must be (forms, layers, bits); got shape {weight.shape}"
            )
        activation = np.asarray(self.activation)
        if activation.ndim != 3:
            raise InputError(
                "Sensitivities.activation must be (forms, layers, bits); got shape "
                f"{activation.shape}"
            )
        object.__setattr__(self, "forms", forms)
        object.__setattr__(
            self, "weight", _array(weight, (len(forms), *weight.shape[1:]), "weight")
        )
        object.__setattr__(
            self,
            "activation",
            _array(activation, (len(forms), weight.shape[1], activation.shape[2]), "activation"),
        )

    @classmethod
    def from_arrays(
        cls,
        space: ElasticSpace,
        weight: npt.ArrayLike,
        activation: npt.ArrayLike | None = None,
        *,
        forms: QuantForm | Sequence[QuantForm] | None = None,
        method: str = "given",
        info: Mapping[str, Any] | None = None,
    ) -> Sensitivities:
        """Sensitivities from plain arrays.

        Args:
            space: the space they belong to.
            weight: ``(n_elastic, len(space.w_bits))`` (the same for every form) or
                ``(len(forms), n_elastic, len(space.w_bits))``.
            activation: likewise over ``space.a_bits``; None means activation bits cost
                nothing (the strategies then keep activations where the budgets allow).
            forms: the forms they hold for (every form of the space by default).
        """
        chosen = (
            space.forms
            if forms is None
            else (forms,)
            if isinstance(forms, QuantForm)
            else tuple(forms)
        )
        for form in chosen:
            space.check_form(form)
        n_elastic = len(space.elastic_indices)
        weights = np.asarray(weight, dtype=np.float64)
        if weights.ndim == 2:
            weights = np.broadcast_to(weights, (len(chosen), *weights.shape))
        if activation is None:
            activations = np.zeros((len(chosen), n_elastic, len(space.a_bits)))
        else:
            activations = np.asarray(activation, dtype=np.float64)
            if activations.ndim == 2:
                activations = np.broadcast_to(activations, (len(chosen), *activations.shape))
        result = cls(space.fingerprint, method, tuple(chosen), weights, activations, info or {})
        result.check_space(space)
        return result

    # -- reading -----------------------------------------------------------------------------

    def check_space(self, space: ElasticSpace) -> None:
        """Raise ValueError unless the arrays fit ``space`` (fingerprint, layers, bits)."""
        if self.space_fingerprint != space.fingerprint:
            raise InputError(
                f"the sensitivities were computed for another space (fingerprint "
                f"{self.space_fingerprint}) than this one ({space.fingerprint})"
            )
        expected_w = (len(self.forms), len(space.elastic_indices), len(space.w_bits))
        expected_a = (len(self.forms), len(space.elastic_indices), len(space.a_bits))
        if self.weight.shape != expected_w or self.activation.shape != expected_a:
            raise InputError(
                f"the sensitivities have shapes {self.weight.shape}/{self.activation.shape}; "
                f"the space needs {expected_w}/{expected_a} (forms, elastic layers, bits)"
            )

    def tables(self, form: QuantForm) -> tuple[FloatArray, FloatArray]:
        """The ``(n_elastic, n_w_bits)`` weight and ``(n_elastic, n_a_bits)`` activation
        tables of one form."""
        try:
            index = self.forms.index(form)
        except ValueError:
            held = ", ".join(map(str, self.forms))
            raise InputError(
                f"no sensitivities for form {form}; they cover {held} (compute them for it)"
            ) from None
        return self.weight[index], self.activation[index]

    def config_sensitivity(self, batch: ConfigBatch) -> FloatArray:
        """The additive model's sensitivity of every config of ``batch`` (elastic layers)."""
        space = batch.space
        self.check_space(space)
        elastic = np.asarray(space.elastic_indices, dtype=np.int64)
        form_row = np.full(len(ALL_FORMS), -1, dtype=np.int64)
        form_row[[ALL_FORMS.index(form) for form in self.forms]] = np.arange(len(self.forms))
        forms = form_row[batch.form_index[:, elastic]]
        if (forms < 0).any():
            raise InputError("a config uses a form the sensitivities do not cover")
        w_lookup = {bits: i for i, bits in enumerate(space.w_bits)}
        a_lookup = {bits: i for i, bits in enumerate(space.a_bits)}
        w_index = np.vectorize(w_lookup.__getitem__, otypes=[np.int64])(batch.w_bits[:, elastic])
        a_index = np.vectorize(a_lookup.__getitem__, otypes=[np.int64])(batch.a_bits[:, elastic])
        layers = np.arange(len(elastic))[None, :]
        total: FloatArray = (
            self.weight[forms, layers, w_index] + self.activation[forms, layers, a_index]
        ).sum(axis=1)
        return total

    # -- files -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (read back by :meth:`from_dict`)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "space_fingerprint": self.space_fingerprint,
            "method": self.method,
            "forms": [str(form) for form in self.forms],
            "weight": self.weight.tolist(),
            "activation": self.activation.tolist(),
            "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sensitivities:
        """Inverse of :meth:`to_dict` (ValueError for anything else)."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT_NAME:
            raise InputError("not an eqsearch sensitivities file")
        if data.get("version") != FORMAT_VERSION:
            raise InputError(
                f"sensitivities format version {data.get('version')!r}; this eqsearch reads "
                f"{FORMAT_VERSION}"
            )
        try:
            return cls(
                space_fingerprint=str(data["space_fingerprint"]),
                method=str(data["method"]),
                forms=tuple(QuantForm.parse(str(text)) for text in data["forms"]),
                weight=np.asarray(data["weight"], dtype=np.float64),
                activation=np.asarray(data["activation"], dtype=np.float64),
                info=dict(data.get("info") or {}),
            )
        except (KeyError, TypeError) as error:
            raise InputError(f"not a valid sensitivities file (missing or bad {error})") from None

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON atomically."""
        return atomic_write_text(path, json.dumps(self.to_dict()) + "\n")

    @classmethod
    def read(cls, path: str | Path, space: ElasticSpace | None = None) -> Sensitivities:
        """Read a file written by :meth:`write` (checked against ``space`` when given).

        Raises:
            InputError: the file is missing, too large, not JSON, not a sensitivities file, or
                computed for another space.
        """
        data = read_json(path, what="sensitivities file")
        try:
            result = cls.from_dict(data)
            if space is not None:
                result.check_space(space)
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None
        return result


def one_layer_lowered(space: ElasticSpace, form: QuantForm) -> tuple[ConfigBatch, ConfigBatch]:
    """The configs of measured sensitivities in ``form``: every elastic layer at every lower
    weight bit width (then activation bit width) with every other layer at the highest bits.

    Returns:
        ``(weight_configs, activation_configs)``: row ``l·(n_bits−1) + k`` lowers elastic
        layer ``l`` to the ``k``-th bit width (ascending; the highest is the base config).
    """
    space.check_form(form)
    elastic = space.elastic_indices
    form_index = ALL_FORMS.index(form)
    batches = []
    for bits, kind in ((space.w_bits, "w"), (space.a_bits, "a")):
        rows = len(elastic) * (len(bits) - 1)
        w = np.full((rows, space.n_layers), space.w_bits[-1], dtype=np.int64)
        a = np.full((rows, space.n_layers), space.a_bits[-1], dtype=np.int64)
        target = w if kind == "w" else a
        for position, layer in enumerate(elastic):
            start = position * (len(bits) - 1)
            target[start : start + len(bits) - 1, layer] = bits[:-1]
        batches.append(ConfigBatch.from_arrays(space, w, a, np.full_like(w, form_index)))
    return batches[0], batches[1]


def measured_sensitivities(
    oracle: AccuracyOracle,
    space: ElasticSpace,
    forms: QuantForm | Sequence[QuantForm] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Sensitivities:
    """Each elastic layer's accuracy drop at each bit width, the others at the highest bits.

    Weight and activation bits are lowered separately: entry ``[l, b]`` of the weight table is
    ``accuracy(highest) − accuracy(highest with layer l's weights at b bits)`` in percentage
    points (0 at the highest bits; negative where lowering happened to score higher).
    Costs ``1 + n_elastic·(len(w_bits) − 1 + len(a_bits) − 1)`` oracle measurements per form.

    Args:
        oracle: measures configs (the supernet).
        space: the space.
        forms: the forms to measure (every form of the space by default).
        progress: called after each form with (forms done, forms in all).
    """
    require_fixed_architecture(space, "measured sensitivity")
    chosen = (
        space.forms if forms is None else (forms,) if isinstance(forms, QuantForm) else tuple(forms)
    )
    n_elastic = len(space.elastic_indices)
    weights = np.zeros((len(chosen), n_elastic, len(space.w_bits)))
    activations = np.zeros((len(chosen), n_elastic, len(space.a_bits)))
    base_accuracy: dict[str, float] = {}
    measurements = 0
    for index, form in enumerate(chosen):
        weight_configs, activation_configs = one_layer_lowered(space, form)
        base = space.batch(space.largest(form))
        stacked = concatenate([base, weight_configs, activation_configs])
        accuracy = np.asarray(oracle.evaluate(stacked), dtype=np.float64)
        if accuracy.shape != (len(stacked),):
            raise InputError(
                f"the oracle returned {accuracy.shape} values for {len(stacked)} configs"
            )
        measurements += len(stacked)
        drop = accuracy[0] - accuracy[1:]
        split = len(weight_configs)
        weights[index, :, :-1] = drop[:split].reshape(n_elastic, len(space.w_bits) - 1)
        activations[index, :, :-1] = drop[split:].reshape(n_elastic, len(space.a_bits) - 1)
        base_accuracy[str(form)] = float(accuracy[0])
        if progress is not None:
            progress(index + 1, len(chosen))
    info = {"measurements": measurements, "base_accuracy": base_accuracy, "unit": "points"}
    return Sensitivities(space.fingerprint, "measured", tuple(chosen), weights, activations, info)


@dataclass(frozen=True)
class CachedSensitivities:
    """Sensitivities with the file they are cached in.

    Attributes:
        sensitivities: the values.
        path: the cache file beside the checkpoint.
        reused: True when they were read from it rather than computed.
        kept: False when computed ones could not be written there (a warning said so).
    """

    sensitivities: Sensitivities
    path: Path
    reused: bool
    kept: bool = True


def cache_path(
    checkpoint: str | Path,
    method: str,
    settings: Mapping[str, Any],
    *,
    checkpoint_digest: str | None = None,
) -> Path:
    """``sensitivities-<method>-<key>.json`` beside the checkpoint, the key a hash of the
    checkpoint's content (its SHA-256, ``checkpoint_digest`` where already known), the method
    and every setting (so another epoch, seed or scoring set is another file, and none
    overwrites another)."""
    location = Path(checkpoint)
    digest = checkpoint_digest or file_sha256(location)
    identity = {"checkpoint": digest, "method": method, **settings}
    text = json.dumps(identity, sort_keys=True, default=str)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    return location.parent / f"sensitivities-{method}-{key}.json"


def cached_sensitivities(
    checkpoint: str | Path,
    method: str,
    settings: Mapping[str, Any],
    compute: Callable[[], Sensitivities],
    space: ElasticSpace,
) -> CachedSensitivities:
    """The sensitivities cached beside ``checkpoint`` for these settings, else ``compute()``
    written there (atomically) for the next run. The file records the checkpoint's SHA-256
    and the settings, and a cache is used only when both are this call's.

    Raises:
        InputError: the cache file exists but is not a sensitivities file of ``space``, or
            records another checkpoint, method or settings (a file renamed or edited).
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    digest = file_sha256(checkpoint)
    path = cache_path(checkpoint, method, settings, checkpoint_digest=digest)
    recorded_settings = json.loads(json.dumps(dict(settings), default=str))
    identity = {"checkpoint_sha256": digest, "settings": recorded_settings}
    if path.is_file():
        cached = Sensitivities.read(path, space)
        recorded = {key: cached.info.get(key) for key in identity}
        if cached.method != method or recorded != identity:
            raise InputError(
                f"{path} was not computed for this checkpoint with these settings (it records "
                "another checkpoint, method or settings than its name stands for); remove it "
                "to compute the sensitivities again"
            )
        return CachedSensitivities(cached, path, True)
    computed = compute()
    computed.check_space(space)
    stored = replace(computed, info={**computed.info, **identity})
    try:
        stored.write(path)
    except OSError as error:  # a read-only place, a directory at the cache's name, a full disk
        warn(
            f"the {method} sensitivities are not cached: cannot write {path} "
            f"({error.strerror or error}); a rerun computes them again"
        )
        return CachedSensitivities(stored, path, False, kept=False)
    return CachedSensitivities(stored, path, False)
