"""``eqsearch latency build|show``: a measured latency table of a space on a runtime."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eqsearch.app.commands.common import (
    EXIT_OK,
    UsageError,
    add_force_argument,
    add_progress_argument,
    non_negative_int,
    positive_int,
    seed_int,
)
from eqsearch.app.console import make_console, phase_bar

if TYPE_CHECKING:
    from rich.console import Console

    from eqsearch.latency.table import LatencyTable
    from eqsearch.pareto import ParetoFront
    from eqsearch.space import ElasticSpace

TABLE_PREFIX = "latency-"


def register(commands: Any) -> None:
    """Add ``latency`` and its sub-commands ``build`` and ``show``."""
    from eqsearch.app.commands.common import add_command_group

    actions = add_command_group(
        commands, "latency", "measured latency tables of a space on a runtime (for the search)"
    )
    build = actions.add_parser(
        "build",
        help="measure every layer at every shape and kernel class, then held-out whole "
        "subnets (no trained weights needed)",
    )
    add = build.add_argument
    add("--supernet", help="a supernet.pt checkpoint (its space; weights are not needed)")
    add("--model", help="instead of --supernet: a registered model's space, untrained")
    add("--image-size", type=positive_int, help="with --model: the input side")
    add("--num-classes", type=positive_int, default=1000, help="with --model (default 1000)")
    add("--in-channels", type=positive_int, default=3, help="with --model (default 3)")
    add("--runtime", default="onnxruntime", help="onnxruntime (default) or openvino")
    add("--threads", type=positive_int, default=2, help="intra-op threads (default 2)")
    add("--batch", type=positive_int, default=1, help="images per inference (default 1)")
    add("--repeats", type=positive_int, default=10, help="timed rounds per subnet (default 10)")
    add(
        "--holdout",
        type=non_negative_int,
        default=50,
        help="random whole subnets measured to state the error (default 50)",
    )
    add(
        "--calibration",
        type=non_negative_int,
        default=12,
        help="random subnets whose latency calibrates the sum of layer times (default 12)",
    )
    add("--seed", type=seed_int, default=0, help="seeds the subnets and the timing order")
    add("--probe", help="a runtime probe file (default: this machine's, probed if missing)")
    add("--out", help="the table (default: latency-RUNTIME.json beside the checkpoint)")
    add_force_argument(build, "--out file (a table measured elsewhere included)")
    add_progress_argument(build)
    build.set_defaults(handler=_cmd_build)

    show = actions.add_parser("show", help="a latency table's settings, error and classes")
    show.add_argument("table", help="a latency table file")
    show.set_defaults(handler=_cmd_show)


def default_table_path(supernet: str | Path, runtime: str) -> Path:
    """``latency-RUNTIME.json`` beside a checkpoint."""
    return Path(supernet).parent / f"{TABLE_PREFIX}{runtime}.json"


def load_latency_table(
    path: str | None, supernet: str | Path, space: ElasticSpace, *, needed: bool
) -> LatencyTable | None:
    """The ``--latency-table`` of a search (default: the one table beside the checkpoint),
    checked against ``space``; None where no latency is asked for.

    Raises:
        UsageError: a latency objective or budget without a table, a table that is not one,
            or one of another space.
    """
    from eqsearch.latency.table import LatencyTable

    if path is None and not needed:
        return None
    if path is None:
        found = sorted(Path(supernet).parent.glob(f"{TABLE_PREFIX}*.json"))
        if len(found) != 1:
            where = Path(supernet).parent
            raise UsageError(
                "latency needs --latency-table: "
                + (
                    f"{len(found)} tables lie beside the checkpoint"
                    if found
                    else f"none lies in {where}; build one with `eqsearch latency build "
                    f"--supernet {supernet}`"
                )
            )
        path = str(found[0])
    table = LatencyTable.load(path)
    table.check_space(space, source=path)
    return table


def _supernet(args: argparse.Namespace) -> tuple[Any, Path | None]:
    """The supernet whose space is measured, and its checkpoint (None with --model)."""
    if bool(args.supernet) == bool(args.model):
        raise UsageError("give exactly one of --supernet and --model")
    if args.model:
        from supernet import build_supernet

        supernet = build_supernet(
            args.model,
            num_classes=args.num_classes,
            in_channels=args.in_channels,
            image_size=args.image_size,
        )
        return supernet.eval(), None
    for flag, value in (("--image-size", args.image_size),):
        if value is not None:
            raise UsageError(f"{flag} goes with --model; a checkpoint holds its own")
    from supernet.files.checkpoint import load_supernet

    if not Path(args.supernet).is_file():
        raise UsageError(f"checkpoint not found: {args.supernet}")
    supernet, checkpoint = load_supernet(args.supernet)
    if checkpoint.get("kind") == "fp":
        raise UsageError(f"{args.supernet} is a full-precision model; use a supernet.pt")
    return supernet.eval(), Path(args.supernet)


def _check_existing(out: Path, key: Any, fingerprint: str, force: bool) -> LatencyTable | None:
    """A table already at ``out`` measured with the same key for the same space (reused), or
    None to build one; one measured elsewhere is refused without ``force``."""
    from eqsearch.files import check_output_file
    from eqsearch.latency.table import LatencyTable

    if not out.exists() or force:
        check_output_file(out, kind="latency", force=force)
        return None
    check_output_file(out, kind="latency", force=True)
    existing = LatencyTable.load(out)
    differences = existing.key.differences(key)
    if existing.space_fingerprint != fingerprint:
        differences.append("space")
    if differences:
        raise UsageError(
            f"{out} was measured with another {', '.join(differences)}; pass --force to "
            "measure again and replace it"
        )
    return existing


def _cmd_build(args: argparse.Namespace) -> int:
    from eqsearch.app.probing import check_runtime
    from eqsearch.latency.fingerprint import machine_key

    check_runtime(args.runtime)
    if args.supernet is None and args.model is not None and args.out is None:
        raise UsageError("--model needs --out (there is no checkpoint to put the table beside)")
    out = Path(args.out) if args.out else default_table_path(args.supernet or ".", args.runtime)
    if out.suffix != ".json":
        raise UsageError(f"a latency table is a .json file; got --out {out}")
    from eqsearch.files import check_output_file

    check_output_file(out, kind="latency", force=True)  # never a file of another kind
    probe = _load_probe(args)
    supernet, _ = _supernet(args)
    from supernet.deployment.deploy import check_exportable
    from supernet.deployment.runtimes.exporting import input_size

    check_exportable(supernet)
    space = supernet.space
    key = machine_key(
        args.runtime,
        threads=args.threads,
        batch=args.batch,
        image_size=input_size(supernet, space.largest()),
    )
    console = make_console()
    existing = _check_existing(out, key, space.fingerprint, args.force)
    if existing is not None:
        console.print(f"reused {out}: measured with the same CPU, runtime and settings")
        print_table_summary(console, existing)
        return EXIT_OK
    from supernet.deployment.runtimes import get_runtime
    from supernet.deployment.runtimes.latency_build import LatencySettings, build_latency_table

    settings = LatencySettings(
        threads=args.threads,
        batch=args.batch,
        repeats=args.repeats,
        holdout=args.holdout,
        calibration=args.calibration,
        seed=args.seed,
    )
    runtime = get_runtime(args.runtime)
    if probe is None or not probe.covers(space.w_bits, space.a_bits, space.forms):
        if args.probe is not None:
            raise UsageError(f"{args.probe} did not measure every bit width and form of the space")
        probe = _probe_space(console, runtime, space, args)
    with phase_bar(console, not args.no_progress) as bar:
        table = build_latency_table(
            supernet,
            runtime,
            probe,
            settings,
            progress=(lambda phase, done, total: bar(phase)(done, total)) if bar else None,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    table.save(out)
    print_table_summary(console, table)
    console.print(f"wrote {out}")
    return EXIT_OK


def _load_probe(args: argparse.Namespace) -> Any:
    from eqsearch.latency.kernels import load_probe

    if args.probe is None:
        from eqsearch.latency.cache import find_probe

        return find_probe(args.runtime)
    probe = load_probe(args.probe)
    if probe.runtime != args.runtime:
        raise UsageError(f"{args.probe} probed {probe.runtime}, not --runtime {args.runtime}")
    return probe


def _probe_space(
    console: Console, runtime: Any, space: ElasticSpace, args: argparse.Namespace
) -> Any:
    """Probe the runtime on the space's bit widths and forms, and keep it in the cache."""
    from eqsearch.latency.cache import probe_path
    from eqsearch.latency.kernels import save_probe
    from supernet.deployment.runtimes.probe import ProbeSettings, run_probe

    settings = ProbeSettings(
        w_bits=tuple(b for b in space.w_bits if b <= 8),
        a_bits=tuple(b for b in space.a_bits if b <= 8),
        forms=space.forms,
        int4=False,
        threads=args.threads,
        repeats=3,
    )
    with phase_bar(console, not args.no_progress) as bar:
        probe = run_probe(runtime, settings, progress=bar("probing the runtime") if bar else None)
    path = probe_path(probe)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_probe(probe, path)
    console.print(f"probed {runtime.name}: {path}")
    return probe


def print_table_summary(console: Console, table: LatencyTable) -> None:
    """The table's settings, how well it predicts held-out subnets, and its kernel classes."""
    from rich.table import Table

    key = table.key
    summary = Table(title=f"latency table: {key.runtime} {key.version} on {key.cpu}")
    summary.add_column("")
    summary.add_column("value", justify="right")
    summary.add_row("threads / batch / input", f"{key.threads} / {key.batch} / {key.image_size}")
    summary.add_row("layers / kernel classes", f"{len(table.units)} / {len(table.classes)}")
    summary.add_row("designed subnets measured", f"{table.validation.get('designed', 0):.0f}")
    summary.add_row(
        "calibration: latency / Σ profiled layers",
        f"{table.slope:.3f}" + (f" (+ {table.intercept_ms:.3f} ms)" if table.intercept_ms else ""),
    )
    designed_error = table.validation.get("designed_median_abs_error")
    if designed_error is not None:
        summary.add_row("median |error| on the designed subnets", f"{100 * designed_error:.1f}%")
    summary.add_row("median spread of measurements", f"{100 * table.spread:.1f}%")
    validation = table.validation
    if validation.get("n"):
        summary.add_row("held-out subnets", f"{validation['n']:.0f}")
        summary.add_row(
            "median / p90 |error|",
            f"{100 * validation['median_abs_error']:.1f}% / "
            f"{100 * validation['p90_abs_error']:.1f}%",
        )
        for name, label in (
            ("spearman", "Spearman ρ: latency table"),
            ("bitops_spearman", "Spearman ρ: BitOPs"),
            ("macs_spearman", "Spearman ρ: MACs"),
        ):
            value = validation.get(name, float("nan"))
            summary.add_row(label, "-" if value != value else f"{value:.3f}")
    summary.add_row("build time", f"{table.seconds:.0f} s")
    console.print(summary)


def _cmd_show(args: argparse.Namespace) -> int:
    from eqsearch.latency.table import LatencyTable

    table = LatencyTable.load(args.table)
    console = make_console()
    print_table_summary(console, table)
    console.print("kernel classes: " + ", ".join(table.classes))
    return EXIT_OK


def measure_front_latency(
    front: ParetoFront, supernet: Any, table: LatencyTable, indices: list[int], repeats: int = 10
) -> ParetoFront:
    """``front`` with ``measured_latency_ms`` of the configs at ``indices``: each exported
    for the table's runtime and timed in interleaved rounds with the table's settings."""
    from supernet.deployment.runtimes import get_runtime
    from supernet.deployment.runtimes.exporting import runtime_graph
    from supernet.deployment.runtimes.latency_build import LatencySettings, measure_wall

    runtime = get_runtime(table.key.runtime)
    settings = LatencySettings(threads=table.key.threads, batch=table.key.batch, repeats=repeats)
    graphs = [runtime_graph(supernet, front.configs[i], runtime) for i in indices]
    measured, _ = measure_wall(runtime, supernet, graphs, settings)
    return front.with_column("measured_latency_ms", measured, indices)
