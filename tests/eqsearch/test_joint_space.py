"""Joint architecture × bits spaces: validation, JSON, canonical configs, per-config costs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eqsearch import costs
from eqsearch.oracle import CachedOracle
from eqsearch.space import (
    JOINT_SPACE_VERSION,
    ConfigBatch,
    ElasticSpace,
    LayerChoice,
    LayerSpec,
    SubnetConfig,
)
from eqsearch.space.genes import ArchGene, Condition
from eqsearch.space.geometry import Dim, LayerGeometry

from .joint_fixtures import TENSORRT, JointOracle, joint_problem, joint_space, loop_layer_sizes

FULL = 32


@pytest.fixture(scope="module")
def space() -> ElasticSpace:
    return joint_space()


def loop_costs(space: ElasticSpace, config: SubnetConfig) -> dict[str, float]:
    """Every cost of one config by a plain loop over the layers it runs."""
    sizes = loop_layer_sizes(space, config)
    running = [(layer, size) for layer, size in zip(space.layers, sizes, strict=True) if size]
    assert len(running) == len(config.choices)
    searched = [
        (s, c) for (layer, s), c in zip(running, config.choices, strict=True) if not layer.pinned
    ]
    w_avg = sum(s["params"] * c.w_bits for s, c in searched) / sum(s["params"] for s, _ in searched)
    a_avg = sum(s["inputs"] * c.a_bits for s, c in searched) / sum(s["inputs"] for s, _ in searched)
    pairs = list(zip([s for _, s in running], config.choices, strict=True))
    params = sum(s["params"] for s, _ in pairs)
    inputs = sum(s["inputs"] for s, _ in pairs)
    size = 0.0
    for s, c in pairs:
        size += np.ceil(s["params"] * c.w_bits / 8)
        scales = s["channels"] if c.form.per_channel else 1
        zero_point = 0 if c.form.w_symmetric else np.ceil(c.w_bits / 8)
        size += scales * (4 + zero_point)
    macs = sum(s["macs"] for s, _ in pairs)
    return {
        "w_bits": w_avg,
        "a_bits": a_avg,
        "w_comp": 32 * params / sum(s["params"] * c.w_bits for s, c in pairs),
        "a_comp": 32 * inputs / sum(s["inputs"] * c.a_bits for s, c in pairs),
        "bitops": sum(s["macs"] * c.w_bits * c.a_bits for s, c in pairs),
        "size_bytes": size,
        "macs": macs,
        "params": params,
    }


# -- validation and JSON ---------------------------------------------------------------------


def test_joint_space_round_trips_through_json_with_version_2(space: ElasticSpace) -> None:
    data = space.to_dict()
    assert data["version"] == JOINT_SPACE_VERSION == space.format_version
    assert len(data["genes"]) == 10 and space.is_joint
    again = ElasticSpace.from_json(json.dumps(data))
    assert again == space and again.fingerprint == space.fingerprint
    # without genes the dict is today's (no version key), and another version is refused
    fixed = ElasticSpace(
        (LayerSpec("a", "linear", 8, 8, 4, 2), LayerSpec("b", "linear", 4, 4, 2, 2))
    )
    assert "version" not in fixed.to_dict() and fixed.format_version == 1
    with pytest.raises(ValueError, match="format version 3"):
        ElasticSpace.from_dict({**data, "version": 3})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("later_condition", "not an earlier architecture gene"),
        ("unknown_geometry_gene", "not an architecture gene"),
        ("inactive_geometry_gene", "can be inactive while the layer runs"),
        ("missing_size", "no size for the gene's value"),
        ("repeated_gene", "must be unique"),
        ("impossible_value", "values \\[5\\] the gene does not take"),
    ],
)
def test_inconsistent_architectures_are_refused(change: str, message: str) -> None:
    depth = ArchGene("depth", (1, 2))
    width = ArchGene("width", (2, 4), (depth.at_least(2),))
    genes = [depth, width]
    geometry = LayerGeometry(Dim(4), Dim.by("width", {2: 8, 4: 16}))
    runs: tuple[Condition, ...] = (depth.at_least(2),)
    if change == "later_condition":
        genes = [ArchGene("width", (2, 4), (Condition("depth", (2,)),)), depth]
    elif change == "unknown_geometry_gene":
        geometry = LayerGeometry(Dim(4), Dim.by("height", {2: 8, 4: 16}))
    elif change == "inactive_geometry_gene":
        runs = ()
    elif change == "missing_size":
        geometry = LayerGeometry(Dim(4), Dim.by("width", {2: 8}))
    elif change == "repeated_gene":
        genes = [depth, depth]
    elif change == "impossible_value":
        runs = (Condition("depth", (5,)),)
    layers = (
        LayerSpec("fixed", "linear", 16, 16, 4, 4),
        LayerSpec.from_geometry("block", "linear", geometry, active_if=runs),
    )
    with pytest.raises(ValueError, match=message):
        ElasticSpace(layers, genes=tuple(genes))


def test_layer_constants_must_match_the_largest_geometry() -> None:
    geometry = LayerGeometry(Dim(3), Dim(8), Dim(3), Dim(64), Dim(16))
    assert LayerSpec.from_geometry("c", "conv", geometry).macs == 8 * 3 * 9 * 16
    with pytest.raises(ValueError, match="differ from its geometry"):
        LayerSpec("c", "conv", 216, 999, 192, 8, geometry=geometry)
    with pytest.raises(ValueError, match="in_channels equal to out_channels"):
        LayerGeometry(Dim(3), Dim(8), depthwise=True)


def test_configs_carry_their_architecture_and_one_choice_per_running_layer(
    space: ElasticSpace,
) -> None:
    shallow = space.uniform(4, 8, TENSORRT, arch={"stage1.depth": 1, "stage2.depth": 1})
    assert len(shallow.choices) == 8  # stem, 2 × (expand, depthwise, project), head
    assert "stage1.block2.kernel" not in shallow.arch_dict
    assert SubnetConfig.from_json(shallow.to_json()) == shallow
    assert json.loads(shallow.to_json())["arch"]["stage2.depth"] == 1
    assert space.layer_choices(shallow)[4:7] == [None, None, None]
    deep = space.largest(TENSORRT)
    assert len(deep.choices) == space.n_layers and deep.arch_dict["stage2.block2.expand"] == 4
    # a config that names a gene its depth switches off, or misses one, is refused
    with pytest.raises(ValueError, match="switch off"):
        space.validate(
            SubnetConfig(shallow.choices, {**shallow.arch_dict, "stage1.block2.kernel": 3})
        )
    with pytest.raises(ValueError, match=r"lacks the architecture gene 'stage1\.block2\.expand'"):
        space.validate(SubnetConfig(shallow.choices, {**shallow.arch_dict, "stage1.depth": 2}))
    with pytest.raises(ValueError, match="runs 8 of the space's 14 layers"):
        space.validate(SubnetConfig(deep.choices, shallow.arch))
    # canonical() drops what the architecture switches off: genes and the skipped layers' choices
    noisy = SubnetConfig(deep.choices, {**shallow.arch_dict, "stage1.block2.kernel": 3})
    skipped = (4, 5, 6, 10, 11, 12)
    kept = tuple(c for i, c in enumerate(deep.choices) if i not in skipped)
    assert space.canonical(noisy) == SubnetConfig(kept, shallow.arch)


# -- canonical configs -----------------------------------------------------------------------


def genomes_differing_only_in_skipped_blocks(space: ElasticSpace) -> np.ndarray:
    layout = space.genome_layout(TENSORRT)
    genome = layout.random(0, 1)[0]
    arch = layout.arch_genes
    names = [gene.name for gene in space.genes]
    genome[arch.start + names.index("stage1.depth")] = 0  # depth 1: block 2 skipped
    variants = np.repeat(genome[None, :], 4, axis=0)
    block2 = [arch.start + names.index(n) for n in ("stage1.block2.expand", "stage1.block2.kernel")]
    variants[1, block2] = 1
    variants[2, block2[0]] = 1
    # the bit genes of the skipped block's searched layer (stage1.block2.project)
    elastic = list(space.elastic_indices)
    column = elastic.index([layer.name for layer in space.layers].index("stage1.block2.project"))
    variants[3, column] = 2
    variants[3, len(elastic) + column] = 1
    return variants


def test_genomes_differing_only_in_skipped_blocks_are_one_subnet(space: ElasticSpace) -> None:
    layout = space.genome_layout(TENSORRT)
    variants = genomes_differing_only_in_skipped_blocks(space)
    assert len(np.unique(variants, axis=0)) == 4
    batch = layout.decode(variants)
    assert len(set(batch.configs())) == 1
    assert len(set(batch.keys())) == 1
    assert len(np.unique(layout.canonical(variants), axis=0)) == 1
    np.testing.assert_array_equal(layout.encode(batch), layout.canonical(variants))
    # a cache asks its oracle once for the four
    oracle = JointOracle(space)
    cached = CachedOracle(oracle, space)
    values = cached.evaluate(batch)
    assert oracle.rows == 1 and len(cached) == 1 and len(set(values.tolist())) == 1


def test_a_samples_file_holds_one_row_per_subnet(space: ElasticSpace, tmp_path) -> None:
    from predictors.samples.collect import collect_samples
    from predictors.samples.drawing import draw_configs
    from predictors.samples.reading import load_samples
    from predictors.samples.settings import SamplingConfig

    drawn = draw_configs(space, 300, seed=1)
    assert len(set(drawn.keys())) == 300 and len(set(drawn.configs())) == 300
    oracle = JointOracle(space)
    run = collect_samples(oracle, space, tmp_path / "samples.csv", SamplingConfig(n=40, seed=2))
    configs, accuracies = load_samples(run.path, space)
    assert len(set(configs)) == 40 == oracle.rows
    np.testing.assert_allclose(accuracies, JointOracle(space).evaluate(configs))
    sidecar = json.loads((tmp_path / "samples.space.json").read_text())
    assert sidecar["version"] == JOINT_SPACE_VERSION
    (tmp_path / "other.space.json").write_text(joint_space(a_bits=(8,)).to_json())
    with pytest.raises(ValueError, match="records another space"):
        collect_samples(oracle, space, tmp_path / "other.csv", SamplingConfig(n=40, seed=2))


def test_spread_sampling_spans_small_and_large_architectures(space: ElasticSpace) -> None:
    from predictors.samples.drawing import draw_configs

    macs = costs.macs(space, draw_configs(space, 600, seed=0))
    smallest, largest = costs.macs(space, space.smallest()), costs.macs(space, space.largest())
    span = largest - smallest
    # a fifth of the draws in each outer tenth of the MACs range
    assert (macs < smallest + 0.2 * span).mean() > 0.1
    assert (macs > largest - 0.2 * span).mean() > 0.1


# -- per-config geometry and costs -------------------------------------------------------------


def test_layer_sizes_and_every_cost_equal_a_per_layer_loop(space: ElasticSpace) -> None:
    batch = space.sample(np.random.default_rng(5), 120, forms="per_layer")
    table = costs.cost_table(space, batch)
    for row, config in enumerate(batch.configs()):
        sizes = loop_layer_sizes(space, config)
        for quantity in ("params", "macs", "inputs", "channels"):
            expected = [0 if size is None else size[quantity] for size in sizes]
            assert getattr(batch, quantity)[row].tolist() == expected
        assert batch.active[row].tolist() == [size is not None for size in sizes]
        for name, value in loop_costs(space, config).items():
            assert table[name][row] == pytest.approx(value, rel=1e-12), name
    single = batch.configs()[7]
    assert costs.flops(space, single) == 2 * costs.macs(space, single)
    assert costs.bitops(space, single) == table["bitops"][7]


def test_custom_objectives_read_per_config_arrays(space: ElasticSpace) -> None:
    batch = space.sample(0, 50)
    # the README's latency lookup: MACs per layer times the wider operand, per config
    bits = np.arange(33)
    latency = (batch.macs * np.maximum(bits[batch.w_bits], bits[batch.a_bits])).sum(axis=1)
    looped = [
        sum(
            s["macs"] * max(c.w_bits, c.a_bits)
            for s, c in zip(
                [s for s in loop_layer_sizes(space, config) if s], config.choices, strict=True
            )
        )
        for config in batch.configs()
    ]
    np.testing.assert_allclose(latency, looped)
    assert batch.arch_values.shape == (50, 10)
    np.testing.assert_array_equal(
        batch.arch_values[:, 0], [config.arch_dict["stage1.depth"] for config in batch]
    )


def test_a_resolution_gene_scales_every_layer() -> None:
    resolution = ArchGene("resolution", (8, 16))
    positions = Dim.by("resolution", {8: 64, 16: 256})
    layers = (
        LayerSpec.from_geometry(
            "conv", "conv", LayerGeometry(Dim(3), Dim(4), Dim(3), positions, positions)
        ),
        LayerSpec.from_geometry("fc", "linear", LayerGeometry(Dim(4), Dim(2))),
    )
    space = ElasticSpace(layers, w_bits=(4, 8), a_bits=(8,), genes=(resolution,))
    small = space.uniform(4, 8, arch={"resolution": 8})
    large = space.uniform(4, 8, arch={"resolution": 16})
    assert costs.macs(space, small) == 4 * 3 * 9 * 64 + 8
    assert costs.macs(space, large) == 4 * 3 * 9 * 256 + 8
    assert costs.average_activation_bits(space, small) == 8
    assert space.batch([small]).inputs.tolist() == [[3 * 64, 4]]


def test_shallow_configs_cost_less_and_skip_layers_entirely(space: ElasticSpace) -> None:
    problem = joint_problem()
    batch = problem.decode(genomes_differing_only_in_skipped_blocks(space)[:1])
    assert not batch.active[0, 4:7].any()
    assert batch.w_bits[0, 4:7].tolist() == [0, 0, 0] and batch.params[0, 4:7].tolist() == [0, 0, 0]
    assert costs.macs(space, space.smallest()) < costs.macs(space, space.largest())
    assert isinstance(batch, ConfigBatch) and len(batch.configs()[0].choices) < space.n_layers
    assert LayerChoice(8, 8, TENSORRT) in batch.configs()[0].choices
