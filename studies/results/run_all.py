"""Study: every study behind the docs' result tables, with seeds, into one folder.

``eqsearch study all --out results/`` (``make results``) runs each stage of
:data:`studies.results.stages.STAGES` once per seed into ``results/<stage>/``, writes one
markdown report per table (mean ± spread over seeds, the binomial standard error of the
images the accuracies were measured on) and ``results/summary.md`` with the commit, date,
command and wall time of each. A finished seed is reused by a rerun (``--force``: measured
again), so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from eqsearch.app.commands.common import (
    add_force_argument,
    add_progress_argument,
    positive_int,
    progress_printer,
)
from eqsearch.errors import InputError
from eqsearch.files import atomic_write_text, check_output_directory
from eqsearch.locks import hold_directory
from studies.entry import study_entry
from studies.report import markdown_table
from studies.results.stages import STAGES, Stage
from studies.results.tables import (
    SeedRun,
    aggregate,
    aggregate_markdown,
    read_seed_run,
    write_seed_run,
)

FULL_SEEDS = 3
"""Seeds of the full form: the tables compare methods whose differences are often within
one seed's noise."""
SUMMARY_NAME = "summary.md"


def _git(*args: str) -> str:
    """The output of a git command run in this package's checkout."""
    return subprocess.run(
        ["git", *args],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()


def code_version() -> str:
    """The commit of the code that runs (``+modified`` with uncommitted changes to tracked
    files), or the installed package's version outside a git checkout."""
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        changes = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        try:
            return f"eqsearch {version('eqsearch')}"
        except PackageNotFoundError:
            return "unknown"
    return commit + ("+modified" if changes else "")


def today() -> str:
    """The date in UTC, ``YYYY-MM-DD``."""
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


@dataclass(frozen=True)
class AllResults:
    """What ``study all`` ran: the finished stages and the failed ones with their errors."""

    stages: list[StageResult]
    failed: dict[str, str]


@dataclass(frozen=True)
class StageResult:
    """One stage over its seeds: the runs and the reports written."""

    stage: Stage
    runs: dict[int, SeedRun]
    reports: dict[str, Path]

    @property
    def seconds(self) -> float:
        """Wall time of every seed's run together."""
        return sum(run.seconds for run in self.runs.values())


def run_stage(
    stage: Stage,
    root: Path,
    seeds: Sequence[int],
    *,
    quick: bool,
    force: bool,
    log: Callable[[str], None],
) -> StageResult:
    """Every seed of one stage (a finished seed is read back unless ``force``), then one
    report per table."""
    runs: dict[int, SeedRun] = {}
    for seed in seeds if stage.seeded else seeds[:1]:
        path = root / stage.name / f"tables-seed-{seed}.json"
        if path.is_file() and not force:
            runs[seed] = read_seed_run(path)
            log(f"{stage.name} seed {seed}: reused {path}")
            continue
        started = time.perf_counter()
        tables = stage.run(root, seed, quick, log)
        run = SeedRun(tables, time.perf_counter() - started, code_version(), today())
        write_seed_run(path, run)
        runs[seed] = run
        log(f"{stage.name} seed {seed}: {run.seconds:.0f} s")
    reports = {
        name: write_report(stage, name, runs, root / stage.name / f"{name}.md", quick)
        for name in runs[min(runs)].tables
    }
    return StageResult(stage, runs, reports)


def _provenance(runs: dict[int, SeedRun]) -> tuple[str, str]:
    commits = ", ".join(dict.fromkeys(run.commit for run in runs.values()))
    dates = ", ".join(dict.fromkeys(run.date for run in runs.values()))
    return commits, dates


def write_report(
    stage: Stage, table: str, runs: dict[int, SeedRun], path: Path, quick: bool
) -> Path:
    """The markdown report of one table over the seeds that measured it."""
    result = aggregate([run.tables[table] for run in runs.values()])
    commits, dates = _provenance(runs)
    seeds = ", ".join(map(str, runs))
    seconds = sum(run.seconds for run in runs.values())
    commands = "; ".join(dict.fromkeys(stage.command.format(seed=seed) for seed in runs))
    lines = [
        f"# {table}: {stage.title}",
        "",
        f"Regenerates the table of `{stage.docs}`"
        + (" at toy sizes (`--quick`: a check, not the docs' figures)." if quick else "."),
        f"Measured at commit {commits} on {dates}, seeds {seeds}, {seconds / 60:.1f} min of "
        f"wall time for the stage; each seed as `{commands}`.",
        "",
        aggregate_markdown(result),
    ]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def write_summary(
    root: Path,
    results: Sequence[StageResult],
    command: str,
    seconds: float,
    quick: bool,
    failed: Mapping[str, str] | None = None,
) -> Path:
    """``summary.md``: every table, where it is, its docs page, seeds, wall time, commit,
    date and command, and the stages that failed with their errors."""
    rows = []
    for result in results:
        commits, dates = _provenance(result.runs)
        for name, report in result.reports.items():
            rows.append(
                [
                    f"[{name}]({report.relative_to(root).as_posix()})",
                    result.stage.docs,
                    ", ".join(map(str, result.runs)),
                    f"{result.seconds / 60:.1f} min",
                    commits,
                    dates,
                    f"`{result.stage.command.format(seed='S')}`",
                ]
            )
    header = ["table", "docs page", "seeds", "stage wall time", "commit", "date", "command"]
    lines = [
        "# Results" + (" (quick: toy sizes)" if quick else ""),
        "",
        f"`{command}` at commit {code_version()} on {today()}: {seconds / 60:.1f} min of wall "
        "time for this call (seeds read back from an earlier call take none).",
        "",
        markdown_table(rows, header),
        "",
        "S: each seed. Each table's report gives its cells as mean ± standard deviation over "
        "the seeds and the binomial standard error of the images its accuracies were "
        "measured on.",
    ]
    for name, error in (failed or {}).items():
        lines += ["", f"Stage `{name}` failed: {error}"]
    return atomic_write_text(root / SUMMARY_NAME, "\n".join(lines) + "\n")


def select_stages(names: str | None) -> list[Stage]:
    """The stages named in a comma-separated list (every stage for None), in run order."""
    if names is None:
        return list(STAGES)
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    known = {stage.name for stage in STAGES}
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        raise InputError(
            f"{{field}} must name stages of {', '.join(sorted(known))}; got {names!r}",
            field="stages",
        )
    return [stage for stage in STAGES if stage.name in wanted]


def run_all(
    out: str | Path,
    *,
    quick: bool = False,
    seeds: int | None = None,
    stages: Sequence[Stage] | None = None,
    force: bool = False,
    command: str = "eqsearch study all",
    log: Callable[[str], None] = print,
) -> AllResults:
    """Run ``stages`` (default: all) with seeds ``0..seeds-1`` (default: 3, or 1 for
    ``quick``) into ``out``; writes the reports and ``summary.md`` after every stage.

    A stage that fails is named with its error in the summary and the returned failures,
    and the next stage runs: one broken study does not cost the others' hours."""
    count = seeds if seeds is not None else (1 if quick else FULL_SEEDS)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InputError(f"{{field}} must be a positive integer; got {count!r}", field="seeds")
    root = check_output_directory(out)
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: list[StageResult] = []
    failed: dict[str, str] = {}
    for stage in stages or STAGES:
        try:
            results.append(
                run_stage(stage, root, list(range(count)), quick=quick, force=force, log=log)
            )
        except Exception as error:  # reported in the summary; the other stages still run
            failed[stage.name] = f"{type(error).__name__}: {error}"
            log(f"{stage.name} failed: {failed[stage.name]}")
        write_summary(root, results, command, time.perf_counter() - started, quick, failed)
    return AllResults(results, failed)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``eqsearch study all`` / ``python -m studies.results.run_all``."""
    add = parser.add_argument
    add("--out", required=True, help="the results folder (one sub-folder per study)")
    add("--quick", action="store_true", help="toy sizes: a check in a minute or two")
    add(
        "--seeds",
        type=positive_int,
        help=f"seeds 0..N-1 of every seeded study (default: {FULL_SEEDS}; 1 with --quick)",
    )
    add("--stages", help=f"comma-separated subset of {','.join(s.name for s in STAGES)}")
    add_force_argument(parser, "every seed's tables (default: a finished seed is reused)")
    add_progress_argument(parser)
    parser.set_defaults(field_flags={"stages": "--stages", "seeds": "--seeds"})


def run_from_args(args: argparse.Namespace) -> int:
    """Run the stages from parsed flags; prints where the summary is."""
    stages = select_stages(args.stages)
    command = " ".join(["eqsearch", "study", "all", *_flags(args)])
    with hold_directory(args.out, what="the results folder"):
        results = run_all(
            args.out,
            quick=args.quick,
            seeds=args.seeds,
            stages=stages,
            force=args.force,
            command=command,
            log=progress_printer(not args.no_progress),
        )
    print(f"wrote {Path(args.out) / SUMMARY_NAME}")
    for name, error in results.failed.items():
        print(f"error: stage {name} failed: {error}", file=sys.stderr)
    return 1 if results.failed else 0


def _flags(args: argparse.Namespace) -> list[str]:
    """The call's flags, as a command line to rerun it."""
    parts = ["--out", shlex.quote(str(args.out))]
    if args.quick:
        parts.append("--quick")
    if args.seeds is not None:
        parts += ["--seeds", str(args.seeds)]
    if args.stages:
        parts += ["--stages", shlex.quote(args.stages)]
    return parts


main = study_entry("all")
"""``python -m studies.results.run_all``: ``eqsearch study all``."""


if __name__ == "__main__":
    raise SystemExit(main())
