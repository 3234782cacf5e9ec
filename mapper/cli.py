"""The `mapper` command: a thin layer over the Python API.

Every user error (a bad file, an impossible constraint, a mapping that does not fit) is
printed as one line on stderr with exit code 2; no traceback, no partial output file.
"""
from __future__ import annotations

import functools
import json
import signal
import sys
from pathlib import Path

import click

from . import __version__
from .arch import load_arch
from .mapping import check, loop_nest_text, parse_mapping
from .model import evaluate
from .problem import DENSITY_KEYS, load_network
from .report import breakdown_table, layer_table, table, totals_line
from .result import document, write_json
from .search import ALGORITHMS, OBJECTIVES
from .spec import MapperError, SpecError, clip, closest, load_yaml, short

# Default time limits: Eyeriss v1 layers are proven optimal in a few seconds, but some
# Eyeriss v2 layers need minutes; without a limit a whole-network search could run for hours.
SEARCH_SECONDS = 60.0          # per layer (search, sweep)
EYEXAM_SECONDS = 20.0          # per search (Eyexam runs three per layer)


class Named(click.Choice):
    """click.Choice that suggests the closest name when one is mistyped."""

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"'{clip(value)}' is not one of {', '.join(self.choices)}"
                      f"{closest(value, self.choices)}", param, ctx)


# Option types: every option is checked by click before any work starts. Workers and --top
# are bounded so a typo cannot start thousands of processes or keep thousands of mappings.
MAX_WORKERS = 256
MAX_TOP = 100
ALGO = Named(ALGORITHMS)
OBJECTIVE = Named(OBJECTIVES)           # not Eyexam's internal 'compute'
SEED = click.IntRange(0, 2 ** 31 - 1)   # CP-SAT's random_seed is a 32-bit int
WORKERS = click.IntRange(1, MAX_WORKERS)
TIME_LIMIT = click.FloatRange(0, 1e7, min_open=True)     # NaN is refused by check_settings
COUNT = click.IntRange(min=1)


def user_errors(func):
    """Turn MapperError into one line on stderr and exit code 2."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except MapperError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mapper")
def main():
    """Mapping-space search for DNN accelerators (Eyeriss v1/v2 and any arch you write).

    Problems and archs are YAML files; --problem and --arch take a built-in name
    (alexnet, mobilenet_v1; eyeriss_v1, eyeriss_v2) or a path.
    """


def problem_options(func):
    func = click.option("--batch", type=click.IntRange(min=1), default=None,
                        help="Batch size N for every layer (overrides the file).")(func)
    func = click.option("--problem", "-p", required=True, help="Problem: built-in name or YAML path.")(func)
    return func


def parse_density_option(text: str | None) -> dict[str, float]:
    """--density weights=0.4,inputs=0.6"""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key in out:
            raise SpecError("", "--density", f"'{key}' is given twice")
        if key not in DENSITY_KEYS:
            raise SpecError("", "--density", f"'{clip(key)}' is not a tensor with a density; use "
                            f"{' or '.join(DENSITY_KEYS)} (e.g. weights=0.4,inputs=0.6)")
        try:
            d = float(value)
        except ValueError:
            raise SpecError("", "--density", f"{key}={short(value)} is not a number") from None
        if not 0.0 < d <= 1.0:   # also refuses nan
            raise SpecError("", "--density", f"density must be in (0, 1], got {key}={d}")
        out[key] = d
    return out


@main.command()
@click.argument("problem")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Batch size N (overrides the file).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def layers(problem, batch, as_json):
    """List each layer's derived loop bounds (per group), strides and MACs, and the total."""
    net = load_network(problem, batch)
    if as_json:
        click.echo(json.dumps({"name": net.name, "macs": net.macs,
                               "layers": [l.describe() for l in net.layers]}, indent=2))
    else:
        click.echo(f"{net.name}: {len(net.layers)} layers (M and C per group)")
        click.echo(layer_table(list(net.layers)))


@main.command("evaluate")
@click.option("--arch", "-a", required=True, help="Architecture: built-in name or YAML path.")
@problem_options
@click.option("--layer", "-l", required=True, help="Layer name in the problem.")
@click.option("--mapping", "-m", "mapping_path", required=True, type=click.Path(),
              help="Mapping file: ours (JSON/YAML or a result document) or a Timeloop map.yaml.")
@click.option("--json", "json_out", type=click.Path(), help="Write the result document here.")
@user_errors
def evaluate_cmd(arch, problem, batch, layer, mapping_path, json_out):
    """Evaluate one mapping: loop nest, per-level breakdown and totals."""
    if json_out:
        _check_writable(json_out)
    arch_spec = load_arch(arch)
    lay = load_network(problem, batch).layer(layer)
    data = load_yaml(mapping_path)
    from .timeloop import is_timeloop_mapping, mapping_from_timeloop
    if is_timeloop_mapping(data):
        mapping = mapping_from_timeloop(data, arch_spec, lay, source=str(mapping_path))
    else:
        mapping = parse_mapping(data, arch_spec, mapping_path)
    check(mapping, lay, arch_spec, mapping_path)
    cost = evaluate(lay, arch_spec, mapping, validate=False)
    click.echo(loop_nest_text(mapping, lay, arch_spec))
    click.echo()
    click.echo(breakdown_table(cost))
    click.echo()
    click.echo(totals_line(cost, arch_spec))
    if json_out:
        write_json(json_out, document(lay, arch_spec, mapping, cost, {"mapping": mapping.to_dict()}))


def search_options(func):
    opts = [
        click.option("--arch", "-a", required=True, help="Architecture: built-in name or YAML path."),
        click.option("--problem", "-p", required=True, help="Problem: built-in name or YAML path."),
        click.option("--layer", "-l", default=None, help="One layer (default: every layer in turn)."),
        click.option("--batch", type=click.IntRange(min=1), default=None, help="Batch size N for every layer."),
        click.option("--density", default=None, help="Densities, e.g. weights=0.4,inputs=0.6 (overrides the file)."),
        click.option("--density-preset", default=None, help="A density preset named in the problem file."),
        click.option("--algo", "algorithm", type=ALGO, default="hybrid", show_default=True,
                     help="hybrid | cpsat | random | exhaustive"),
        click.option("--objective", type=OBJECTIVE, default="edp", show_default=True, help="energy | delay | edp"),
        click.option("--workers", type=WORKERS, default=None,
                     help="Parallel workers (joblib processes / CP-SAT threads); default: all cores."),
        click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed."),
        click.option("--time-limit", type=TIME_LIMIT, default=SEARCH_SECONDS, show_default=True,
                     help="Seconds per layer (an unproven result is marked budget)."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def load_layers(problem, batch, density, density_preset, layer=None):
    """The layers to work on, with --batch, --density and --density-preset applied."""
    net = load_network(problem, batch)
    over = parse_density_option(density)
    preset = net.preset(density_preset) if density_preset else {}
    if layer is not None and not layer.strip():
        raise MapperError("--layer: an empty layer name (leave --layer out to use every layer)")
    layers = [net.layer(layer)] if layer is not None else list(net.layers)
    out = []
    for l in layers:
        d = {**preset.get(l.name, {}), **over}
        out.append(l.with_density(d) if d else l)
    return net, out


def default_workers(workers):
    import os
    if workers is None:
        return max(1, os.cpu_count() or 1)
    return workers


@main.command("search")
@search_options
@click.option("--budget", type=COUNT, default=None, help="Evaluation budget (candidates) per layer.")
@click.option("--patience", type=COUNT, default=None,
              help="Random search: stop after this many valid candidates without improvement "
                   "(default 20000 without --budget).")
@click.option("--top", type=click.IntRange(1, MAX_TOP), default=1, show_default=True, help="Emit the K best distinct mappings.")
@click.option("--json", "json_out", type=click.Path(), help="Write the result document(s) here.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@user_errors
def search_cmd(arch, problem, layer, batch, density, density_preset, algorithm, objective, workers, seed,
               time_limit, budget, patience, top, json_out, quiet):
    """Find the best mapping of a layer (or of every layer of a network)."""
    from .progress import Progress
    from .search import check_settings, search_network
    workers = default_workers(workers)
    check_settings(algorithm, objective, workers, time_limit, top, budget)
    arch_spec = load_arch(arch)
    net, layers = load_layers(problem, batch, density, density_preset, layer)
    if json_out:
        _check_writable(json_out)
    progress = Progress(enabled=not quiet)
    results = search_network(layers, arch_spec, algorithm=algorithm, objective=objective, seed=seed,
                             workers=workers, time_limit=time_limit, budget=budget, patience=patience,
                             top=top, progress=progress)
    for res in results:
        click.echo(f"=== {res.layer.name} on {arch_spec.name}: {res.layer.macs:,} MACs ===")
        for rank, found in enumerate(res.found):
            if len(res.found) > 1:
                click.echo(f"--- mapping {rank + 1} of {len(res.found)} ---")
            click.echo(loop_nest_text(found.mapping, res.layer, arch_spec))
            click.echo()
            click.echo(breakdown_table(found.cost))
            click.echo()
            click.echo(totals_line(found.cost, arch_spec))
        click.echo(search_line(res))
        click.echo()
    from .search import interrupted
    stopped = any(interrupted(r) for r in results) or len(results) < len(layers)
    if (len(results) > 1 or not layer) and results:
        click.echo(network_summary(results, arch_spec, objective))
        if stopped:
            click.echo(f"partial: interrupted (Ctrl-C) with {len(results)} of {len(layers)} layers searched; "
                       "the totals above cover only those, some with their best so far (status budget)")
    if json_out and results:
        docs = [d for r in results for d in r.documents()]
        write_json(json_out, docs[0] if layer and len(docs) == 1 else docs)
    if stopped:
        sys.exit(130)


def _check_writable(path):
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise MapperError(f"{path}: is a folder; --json takes a file name")
    if parent.exists() and not os_access(parent):
        raise MapperError(f"{path}: cannot write output (folder {parent} is not writable)")


def os_access(folder) -> bool:
    import os
    return os.access(folder, os.W_OK)


def search_line(res) -> str:
    gap = "" if res.gap is None else f", gap {100 * res.gap:.2f}%"
    notes = f" ({'; '.join(res.notes)})" if res.notes else ""
    return (f"search: {res.settings['algorithm']}, objective {res.settings['objective']}, status {res.status}{gap}; "
            f"{res.evaluated:,} candidates evaluated ({res.valid:,} valid) in {res.seconds:.2f} s; "
            f"best found by {res.best.found_by}{notes}")


def network_summary(results, arch_spec, objective) -> str:
    rows = [("layer", "MACs", "energy pJ", "pJ/MAC", "cycles", "util", "status", "seconds")]
    energy = cycles = macs = 0
    for r in results:
        c = r.best.cost
        energy += c.energy_pj
        cycles += c.cycles
        macs += c.macs
        rows.append((r.layer.name, f"{c.macs:,}", f"{c.energy_pj:,.0f}", f"{c.pj_per_mac:.3f}", f"{c.cycles:,}",
                     f"{100 * c.utilization:.1f}%", r.status, f"{r.seconds:.2f}"))
    latency_ms = cycles / (arch_spec.clock_mhz * 1e3)
    rows.append(("total", f"{macs:,}", f"{energy:,.0f}", f"{energy / macs:.3f}", f"{cycles:,}",
                 f"{100 * macs / (cycles * arch_spec.pes):.1f}%", "", f"{sum(r.seconds for r in results):.2f}"))
    lines = table(rows, right=range(1, len(rows[0])))
    lines.append(f"network: {energy:,.0f} pJ ({energy / macs:.3f} pJ/MAC), {cycles:,} cycles = {latency_ms:.3f} ms "
                 f"at {arch_spec.clock_mhz:g} MHz ({1e3 / latency_ms:.1f} inferences/s, "
                 f"{1e12 / energy:.1f} inferences/J)")
    return "\n".join(lines)


@main.command("space")
@click.option("--arch", "-a", required=True, help="Architecture: built-in name or YAML path.")
@click.option("--problem", "-p", required=True, help="Problem: built-in name or YAML path.")
@click.option("--layer", "-l", required=True, help="Layer name.")
@click.option("--batch", type=click.IntRange(min=1), default=None)
@user_errors
def space_cmd(arch, problem, layer, batch):
    """Print the size of each subspace of the mapspace before and after pruning."""
    from .search.space import Space
    arch_spec = load_arch(arch)
    lay = load_network(problem, batch).layer(layer)
    space = Space.build(lay, arch_spec)
    rows = [("subspace", "before pruning", "after pruning")] + space.report()
    click.echo(f"mapspace of {lay.name} on {arch_spec.name}")
    click.echo("\n".join(table(rows, right={1, 2})))


def entry() -> None:
    """Console entry point: click's own usage errors become one `error:` line, exit code 2."""
    try:
        main(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        # a second Ctrl-C: stop at once (every file written so far was written atomically)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 130:         # interrupted: a further Ctrl-C must not cut the exit short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.ClickException as exc:
        where = f"{exc.ctx.command_path}: " if getattr(exc, "ctx", None) else ""
        click.echo(f"error: {where}{exc.format_message()}", err=True)
        sys.exit(exc.exit_code if exc.exit_code else 2)


@main.command("sweep")
@click.option("--arch", "-a", "archs", multiple=True, required=True, help="Architecture (repeatable).")
@click.option("--problem", "-p", "problems", multiple=True, required=True, help="Problem (repeatable).")
@click.option("--objective", type=OBJECTIVE, default="edp", show_default=True, help="energy | delay | edp")
@click.option("--algo", "algorithm", type=ALGO, default="hybrid", show_default=True,
              help="hybrid | cpsat | random | exhaustive")
@click.option("--time-limit", type=TIME_LIMIT, default=SEARCH_SECONDS, show_default=True, help="Seconds per layer.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--workers", type=WORKERS, default=None, help="Parallel jobs (default: all cores).")
@click.option("--out", "out", default="results/sweep", show_default=True, type=click.Path(),
              help="Output folder.")
@click.option("--resume", is_flag=True, help="Skip jobs whose result exists with the same inputs.")
@click.option("--backend", type=click.Choice(["loky", "dask"]), default="loky", show_default=True)
@click.option("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786.")
@click.option("--batch", type=click.IntRange(min=1), default=None)
@click.option("--density", default=None, help="Densities, e.g. weights=0.4,inputs=0.6.")
@click.option("--density-preset", default=None)
@click.option("--quiet", "-q", is_flag=True)
@user_errors
def sweep_cmd(archs, problems, objective, algorithm, time_limit, seed, workers, out, resume, backend,
              scheduler, batch, density, density_preset, quiet):
    """Search every layer of every network on every architecture; write a results folder."""
    from .progress import Progress
    from .search import check_settings
    from .sweep import sweep
    workers = default_workers(workers)
    check_settings(algorithm, objective, workers, time_limit, 1, None)
    if scheduler and backend != "dask":
        raise MapperError("--scheduler: only used with --backend dask")
    arch_specs = [load_arch(a) for a in archs]
    networks = [load_layers(p, batch, density, density_preset) for p in problems]
    settings = {"algorithm": algorithm, "objective": objective, "seed": seed, "time_limit": time_limit}
    summary = sweep(arch_specs, networks, out, settings, workers=workers, resume=resume, backend=backend,
                    scheduler=scheduler, progress=Progress(enabled=not quiet))
    rows = [("network", "arch", "energy uJ", "pJ/MAC", "latency ms", "inf/s", "inf/J", "util")]
    for net, per_arch in summary["networks"].items():
        for arch_name, t in per_arch.items():
            rows.append((net, arch_name, f"{t['energy_pj'] / 1e6:,.1f}", f"{t['pj_per_mac']:.3f}",
                         f"{t['latency_ms']:.3f}", f"{t['inferences_per_s']:.1f}", f"{t['inferences_per_j']:.1f}",
                         f"{100 * t['utilization']:.1f}%" + ("" if t["complete"] else " (partial)")))
    click.echo("\n".join(table(rows, right=range(2, len(rows[0])))))
    jobs = summary["jobs"]
    click.echo(f"{jobs['total']} jobs: {jobs['run']} run, {jobs['skipped']} already done; results in {out}")
    if summary["interrupted"]:
        click.echo("interrupted: run again with --resume to finish", err=True)
        sys.exit(130)


@main.command("eyexam")
@click.option("--arch", "-a", required=True, help="Architecture: built-in name or YAML path.")
@click.option("--problem", "-p", required=True, help="Problem: built-in name or YAML path.")
@click.option("--layer", "-l", default=None, help="One layer (default: every layer, with a network summary).")
@click.option("--batch", type=click.IntRange(min=1), default=None)
@click.option("--density", default=None, help="Densities, e.g. weights=0.4,inputs=0.6.")
@click.option("--density-preset", default=None)
@click.option("--objective", type=OBJECTIVE, default="edp", show_default=True, help="Objective of step 7's mapping.")
@click.option("--algo", "algorithm", type=ALGO, default="hybrid", show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--workers", type=WORKERS, default=None)
@click.option("--time-limit", type=TIME_LIMIT, default=EYEXAM_SECONDS, show_default=True,
              help="Seconds per search (three per layer).")
@click.option("--json", "json_out", type=click.Path(), help="Write the analysis here.")
@click.option("--quiet", "-q", is_flag=True)
@user_errors
def eyexam_cmd(arch, problem, layer, batch, density, density_preset, objective, algorithm, seed, workers,
               time_limit, json_out, quiet):
    """Eyexam: the bound on MACs/cycle step by step, and the step that loses the most."""
    from .eyexam import eyexam, format_network, format_table, network_eyexam, network_summary, save_json
    from .progress import Progress
    from .search import check_settings
    workers = default_workers(workers)
    check_settings(algorithm, objective, workers, time_limit, 1, None)
    if json_out:
        _check_writable(json_out)
    arch_spec = load_arch(arch)
    net, layers = load_layers(problem, batch, density, density_preset, layer)
    settings = dict(objective=objective, algorithm=algorithm, seed=seed, workers=workers, time_limit=time_limit,
                    progress=Progress(enabled=not quiet))
    if layer:
        result = eyexam(layers[0], arch_spec, **settings)
        click.echo(format_table(result))
        if json_out:
            save_json(json_out, result)
        return
    results = network_eyexam(layers, arch_spec, **settings)
    for r in results:
        click.echo(format_table(r))
        click.echo()
    click.echo(format_network(network_summary(results)))
    if json_out:
        save_json(json_out, results)


@main.command("plot")
@click.argument("results_dir", required=False, type=click.Path())
@click.option("--eyexam", "eyexam_json", type=click.Path(), help="Plot an Eyexam JSON as a waterfall.")
@click.option("-o", "--out", "out", type=click.Path(), help="PNG file to write.")
@user_errors
def plot_cmd(results_dir, eyexam_json, out):
    """Plot a sweep's energy per layer by storage level, or an Eyexam waterfall."""
    from .plot import plot_eyexam, plot_results
    if bool(results_dir) == bool(eyexam_json):
        raise MapperError("plot: give either a RESULTS_DIR or --eyexam EYEXAM.json")
    path = plot_eyexam(eyexam_json, out) if eyexam_json else plot_results(results_dir, out)
    click.echo(f"wrote {path}")


@main.group("convert")
def convert_group():
    """Convert Timeloop v0.4 problems and architectures to our format."""


@convert_group.command("timeloop-problem")
@click.argument("problem", type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(), help="Our problem YAML to write.")
@user_errors
def convert_problem(problem, out):
    """A Timeloop CNN_Layer problem -> our problem file."""
    from .timeloop import write_problem
    write_problem(problem, out)
    click.echo(f"wrote {out}")


@convert_group.command("timeloop-arch")
@click.argument("arch_file", type=click.Path())
@click.option("--ert", required=True, type=click.Path(), help="Timeloop energy reference table (ERT).")
@click.option("--constraints", type=click.Path(), default=None, help="Timeloop constraints file.")
@click.option("--name", default=None, help="Name of the converted arch.")
@click.option("-o", "--out", required=True, type=click.Path(), help="Our arch YAML to write.")
@user_errors
def convert_arch(arch_file, ert, constraints, name, out):
    """A Timeloop v0.4 architecture with its ERT (and constraints) -> our arch file."""
    from .timeloop import write_arch
    unsupported = write_arch(arch_file, ert, out, constraints_path=constraints, name=name)
    for part in unsupported:
        click.echo(f"note: no equivalent in our format, not converted: {part}", err=True)
    click.echo(f"wrote {out}")


@main.group("export")
def export_group():
    """Export results to other tools' formats."""


@export_group.command("timeloop")
@click.argument("result", type=click.Path())
@click.option("--arch", "-a", default=None, help="Our arch the result is for (default: the result's arch).")
@click.option("--timeloop-problem", type=click.Path(), default=None,
              help="The Timeloop problem, to list exactly its dimensions in the mapping.")
@click.option("-o", "--out", required=True, type=click.Path(), help="Timeloop map.yaml to write.")
@user_errors
def export_timeloop(result, arch, timeloop_problem, out):
    """Our result document -> a Timeloop mapping (map.yaml) for timeloop-model."""
    from .timeloop import export_result, problem_dims
    dims = problem_dims(timeloop_problem) if timeloop_problem else None
    export_result(result, out, arch, dims=dims)
    click.echo(f"wrote {out}")


if __name__ == "__main__":  # pragma: no cover
    entry()
