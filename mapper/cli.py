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
from .arch import load_arch, naming_source
from .mapping import check, loop_nest_text, parse_mapping
from .model import evaluate, network_utilization
from .problem import DENSITY_KEYS, load_network
from .report import breakdown_table, layer_table, table, totals_line, unit_note
from .result import document, write_json
from .search import ALGORITHMS, OBJECTIVES, PARALLEL
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
        if any(l.type == "matmul" for l in net.layers):
            click.echo("matmul layers as the loop nest: N = rows M (x batch when B is a weight), M = columns N, "
                       "C = K, G = batch (x batch when B is an activation); A plays Inputs, B Weights")


@main.command("evaluate")
@click.option("--arch", "-a", required=True, help="Architecture: built-in name or YAML path.")
@problem_options
@click.option("--layer", "-l", default=None,
              help="Layer name in the problem (default: every layer of a whole-network result file).")
@click.option("--mapping", "-m", "mapping_path", required=True, type=click.Path(),
              help="Mapping file: ours (JSON/YAML, a result document or a whole-network result) or a "
                   "Timeloop map.yaml.")
@click.option("--json", "json_out", type=click.Path(), help="Write the result document(s) here.")
@click.option("--density", default=None,
              help="Densities, e.g. weights=0.4,inputs=0.6 (default: a result document's, else the file's).")
@click.option("--density-preset", default=None, help="A density preset named in the problem file.")
@user_errors
def evaluate_cmd(arch, problem, batch, layer, mapping_path, json_out, density, density_preset):
    """Evaluate a mapping (or every layer of a whole-network result): loop nest, breakdown, totals."""
    from .problem import parse_density
    from .result import result_layer, select_results
    if json_out is not None:
        _check_writable(json_out)
    arch_spec = load_arch(arch)
    net = load_network(problem, batch)
    over = parse_density_option(density)
    preset = net.preset(density_preset) if density_preset else {}
    data = load_yaml(mapping_path)
    from .timeloop import is_timeloop_mapping, mapping_from_timeloop
    entries = [data] if is_timeloop_mapping(data) else select_results(data, str(mapping_path), layer)
    out_docs, total = [], []
    for entry in entries:
        name = layer or result_layer(entry) or (net.layers[0].name if len(net.layers) == 1 else None)
        if name is None:
            raise MapperError(f"{mapping_path}: the mapping does not name its layer; give --layer")
        lay = net.layer(name)
        recorded = entry.get("layer", {}).get("density") if isinstance(entry.get("layer"), dict) else None
        if over or density_preset:
            lay = lay.with_density({**preset.get(lay.name, {}), **over})
        elif isinstance(recorded, dict) and recorded != lay.densities():
            # the result was found at these densities: evaluating it dense would silently change its cost
            lay = lay.with_density(parse_density(recorded, str(mapping_path), "layer.density"))
            click.echo(f"note: {lay.name}: the result document's densities "
                       f"({', '.join(f'{k}={v:g}' for k, v in lay.densities().items())}); --density overrides",
                       err=True)
        if is_timeloop_mapping(entry):
            mapping = mapping_from_timeloop(entry, arch_spec, lay, source=str(mapping_path))
        else:
            mapping = parse_mapping(entry, arch_spec, mapping_path)
        _check_recorded_dims(entry, mapping, lay, mapping_path)
        check(mapping, lay, arch_spec, mapping_path)
        cost = evaluate(lay, arch_spec, mapping, validate=False)
        if len(entries) > 1:
            click.echo(f"=== {lay.name} on {arch_spec.name}: {lay.macs:,} MACs ===")
        click.echo(loop_nest_text(mapping, lay, arch_spec))
        click.echo()
        click.echo(breakdown_table(cost, lay, arch_spec.energy_unit))
        click.echo()
        click.echo(totals_line(cost, arch_spec))
        if len(entries) > 1:
            click.echo()
        out_docs.append(document(lay, arch_spec, mapping, cost, {"mapping": mapping.to_dict()}))
        total.append(cost)
    if len(entries) > 1:
        u = arch_spec.energy_unit
        energy, cycles = sum(c.energy_pj for c in total), sum(c.cycles for c in total)
        click.echo(f"{len(total)} layers: energy {energy:,.1f} {u}, {cycles:,} cycles")
    if unit_note(arch_spec):
        click.echo(unit_note(arch_spec))
    if json_out is not None:
        write_json(json_out, out_docs[0] if len(out_docs) == 1 else out_docs)


def _check_recorded_dims(entry, mapping, lay, src) -> None:
    """A result document read back for a layer of other sizes: its factors would otherwise
    be taken for remainders (they multiply to the recorded sizes, not this layer's)."""
    recorded = entry.get("layer", {}).get("dims") if isinstance(entry.get("layer"), dict) else None
    if not isinstance(recorded, dict) or mapping.is_perfect(lay):
        return
    off = [f"{d} {recorded[d]}" for d in lay.dims if d in recorded and recorded[d] != lay.dims[d]]
    if off and mapping.dim_products() == {**lay.dims, **{d: recorded[d] for d in lay.dims if d in recorded}}:
        raise SpecError(str(src), "layer.dims", f"the result is for a layer with {', '.join(off)}, not layer "
                        f"{lay.name}: its factors multiply to those sizes")


FACTORIZATION_OPTION = click.option(
    "--factorization", type=click.Choice(["perfect", "imperfect"]), default="perfect", show_default=True,
    help="perfect: every dimension's factors multiply to its size; imperfect: remainder tiles too "
         "(a larger space; CP-SAT proves optimality over its perfect part only, see README).")


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
                     help="Parallel workers (processes x CP-SAT threads never exceed it); default: the usable cores."),
        click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed."),
        click.option("--time-limit", type=TIME_LIMIT, default=SEARCH_SECONDS, show_default=True,
                     help="Seconds per layer (an unproven result is marked budget)."),
        FACTORIZATION_OPTION,
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
    """--workers, by default the cores this process may use (joblib counts CPU affinity and
    container quotas, unlike os.cpu_count): every search keeps processes x CP-SAT threads
    within it, so the default never oversubscribes the machine."""
    if workers is None:
        from joblib import cpu_count
        return max(1, cpu_count())
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
@click.option("--summary", "detail", flag_value="summary",
              help="Print only the network table (one row per layer).")
@click.option("--verbose", "-v", "detail", flag_value="verbose",
              help="Print every layer's loop nest and breakdown (the default does so for one --layer only).")
@click.option("--pareto", is_flag=True,
              help="The energy-cycles trade-off front of each layer (and of the network) instead of one best.")
@click.option("--parallel", type=click.Choice(PARALLEL), default="layers", show_default=True,
              help="With several workers and layers: layers searches several layers at once, one worker "
                   "each; within searches one layer at a time with every worker (a proof is likelier "
                   "within --time-limit).")
@user_errors
def search_cmd(arch, problem, layer, batch, density, density_preset, algorithm, objective, workers, seed,
               time_limit, factorization, budget, patience, top, json_out, quiet, detail, pareto, parallel):
    """Find the best mapping of a layer (or of every layer of a network)."""
    from .progress import Progress
    from .search import check_settings, search_network
    workers = default_workers(workers)
    check_settings(algorithm, objective, workers, time_limit, top, budget, factorization)
    arch_spec = load_arch(arch)
    net, layers = load_layers(problem, batch, density, density_preset, layer)
    if json_out is not None:
        _check_writable(json_out)
    if pareto:
        if factorization != "perfect":
            raise MapperError("--pareto searches perfect factorizations only; drop --factorization imperfect")
        return pareto_output(layers, arch_spec, seed, workers, time_limit, json_out, quiet, detail)
    progress = Progress(enabled=not quiet)
    import time
    start = time.monotonic()
    results = search_network(layers, arch_spec, algorithm=algorithm, objective=objective, seed=seed,
                             workers=workers, time_limit=time_limit, budget=budget, patience=patience,
                             top=top, progress=progress, factorization=factorization, parallel=parallel)
    wall = time.monotonic() - start
    detail = detail or ("verbose" if layer else "layers")
    if detail != "summary":
        for res in results:
            click.echo(layer_text(res, arch_spec, verbose=detail == "verbose"))
    from .search import interrupted
    stopped = any(interrupted(r) for r in results) or len(results) < len(layers)
    if (len(results) > 1 or not layer or detail == "summary") and results:
        click.echo(network_summary(results, arch_spec, objective, wall))
        if stopped:
            click.echo(f"partial: interrupted (Ctrl-C) with {len(results)} of {len(layers)} layers searched; "
                       "the totals above cover only those, some with their best so far (status budget)")
    elif stopped and not results:
        click.echo(f"partial: interrupted (Ctrl-C) before any of the {len(layers)} layers was searched; "
                   "nothing to report")
    note = unit_note(arch_spec)
    if note:
        click.echo(note)
    if json_out is not None and results:
        docs = [d for r in results for d in r.documents()]
        write_json(json_out, docs[0] if layer and len(docs) == 1 else docs)
    if stopped:
        sys.exit(130)


def pareto_output(layers, arch_spec, seed, workers, time_limit, json_out, quiet, detail) -> None:
    """`search --pareto`: each distinct layer's front (a table and what it guarantees), the
    network front of the sums, the JSON."""
    from .progress import Board, Progress
    from .report import front_table
    from .search.pareto import front_document, layer_front, network_front
    fronts, by_shape = [], {}
    with Board(Progress(enabled=not quiet), arch_spec.name + " fronts", len(layers), time_limit) as board:
        for lay in layers:
            key = (lay.type, lay.shape_key())
            board.report(lay.name, f"[{lay.name}] front: enumerating or sampling")
            if key not in by_shape:
                by_shape[key] = layer_front(lay, arch_spec, seed=seed, time_limit=time_limit, workers=workers)
            fr = by_shape[key]
            from dataclasses import replace
            fronts.append(replace(fr, layer=lay))
            board.finished(lay.name, f"{len(fr.points)} points")
    for fr in fronts:
        if detail != "summary" or len(fronts) == 1:
            click.echo(f"=== {fr.layer.name} on {arch_spec.name}: energy-cycles front, {len(fr.points)} points ===")
            click.echo(front_table([(p.cost.energy_pj, p.cost.cycles) for p in fr.points], arch_spec, fr.layer.macs))
            click.echo(f"front: {fr.guarantee}; {fr.evaluated:,} candidates in {fr.seconds:.2f} s")
            click.echo()
    net = None
    if len(fronts) > 1:
        net = network_front(fronts)
        macs = sum(fr.layer.macs for fr in fronts)
        click.echo(f"=== network on {arch_spec.name}: energy-cycles front of the sums over {len(fronts)} layers, "
                   f"{len(net)} points ===")
        click.echo(front_table([(p.energy_pj, p.cycles) for p in net], arch_spec, macs))
        exact = all(fr.exact for fr in fronts)
        click.echo("front: " + ("exact (every layer's front is exact)" if exact else
                                "as good as the layers' fronts (some are sampled, see above)"))
    note = unit_note(arch_spec)
    if note:
        click.echo(note)
    if json_out is not None:
        write_json(json_out, front_document(fronts, net))


def _check_writable(path, option: str = "--json"):
    """Refuse up front, before any long work, an output path that cannot be written as a
    regular file (see result.check_output) or whose folder is not writable."""
    from .result import check_output
    check_output(path, option)
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if parent.exists() and not os_access(parent):
        raise MapperError(f"{path}: cannot write output (folder {parent} is not writable)")


def os_access(folder) -> bool:
    import os
    return os.access(folder, os.W_OK)


def layer_text(res, arch_spec, verbose: bool) -> str:
    """One layer's result: header, (verbose: each mapping's loop nest and breakdown), the
    totals line and the search line."""
    lines = [f"=== {res.layer.name} on {arch_spec.name}: {res.layer.macs:,} MACs ==="]
    for rank, found in enumerate(res.found):
        if len(res.found) > 1:
            lines.append(f"--- mapping {rank + 1} of {len(res.found)} ---")
        if verbose:
            lines += [loop_nest_text(found.mapping, res.layer, arch_spec), "",
                      breakdown_table(found.cost, res.layer, arch_spec.energy_unit), ""]
        lines.append(totals_line(found.cost, arch_spec))
    lines += [search_line(res), ""]
    return "\n".join(lines)


def status_text(res) -> str:
    """`optimal`, or `budget (time limit)` etc.: the status with the reason it ended there."""
    return res.status if res.status == "optimal" or not res.reason else f"{res.status} ({res.reason})"


def search_line(res) -> str:
    gap = "" if res.gap is None else f", gap {100 * res.gap:.2f}% to the lower bound"
    why = f" by {res.reason}" if res.status == "optimal" and res.reason else ""
    notes = f" ({'; '.join(res.notes)})" if res.notes else ""
    return (f"search: {res.settings['algorithm']}, objective {res.settings['objective']}, status "
            f"{status_text(res)}{why}{gap}; {res.evaluated:,} candidates evaluated ({res.valid:,} valid) in "
            f"{res.seconds:.2f} s; best found by {res.best.found_by}{notes}")


def network_summary(results, arch_spec, objective, wall: float | None = None) -> str:
    """The network table: one row per layer (its own search time), the total row (the wall
    time of the whole search when given) and a line of network totals."""
    u = arch_spec.energy_unit
    rows = [("layer", "MACs", f"energy {u}", f"{u}/MAC", "cycles", "util", "status", "gap", "search s")]
    energy = cycles = macs = 0
    for r in results:
        c = r.best.cost
        energy += c.energy_pj
        cycles += c.cycles
        macs += c.macs
        gap = "" if r.gap is None else f"{100 * r.gap:.2f}%"
        rows.append((r.layer.name, f"{c.macs:,}", f"{c.energy_pj:,.0f}", f"{c.pj_per_mac:.3f}", f"{c.cycles:,}",
                     f"{100 * c.utilization:.1f}%", status_text(r), gap, f"{r.seconds:.2f}"))
    latency_ms = cycles / (arch_spec.clock_mhz * 1e3)
    per_layer = sum(r.seconds for r in results)
    util = network_utilization(((r.best.cost.performed_macs, r.best.cost.cycles) for r in results), arch_spec.pes)
    rows.append(("total", f"{macs:,}", f"{energy:,.0f}", f"{energy / macs:.3f}", f"{cycles:,}",
                 f"{100 * util:.1f}%", "", "",
                 f"{per_layer:.2f}" if wall is None else f"{wall:.2f} wall"))
    lines = table(rows, right=range(1, len(rows[0])))
    per_j = f"{1e12 / energy:.1f} inferences/J" if u == "pJ" else f"{1 / energy:.3g} inferences/{u}"
    lines.append(f"network: {energy:,.0f} {u} ({energy / macs:.3f} {u}/MAC), {cycles:,} cycles = {latency_ms:.3f} "
                 f"ms at {arch_spec.clock_mhz:g} MHz ({1e3 / latency_ms:.1f} inferences/s, {per_j})")
    if wall is not None:
        lines.append(f"time: {wall:.2f} s wall for the network; per-layer search times add up to {per_layer:.2f} s "
                     f"(layers run in parallel when --workers > 1, unless --parallel within; a reused layer takes 0 s)")
    return "\n".join(lines)


@main.command("space")
@click.option("--arch", "-a", required=True, help="Architecture: built-in name or YAML path.")
@click.option("--problem", "-p", required=True, help="Problem: built-in name or YAML path.")
@click.option("--layer", "-l", required=True, help="Layer name.")
@click.option("--batch", type=click.IntRange(min=1), default=None)
@click.option("--diagnose", is_flag=True, help="Also sample candidates and say why the invalid ones are invalid.")
@click.option("--samples", type=click.IntRange(min=1, max=100_000), default=2000, show_default=True,
              help="Candidates sampled per space for --diagnose.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed for --diagnose.")
@FACTORIZATION_OPTION
@user_errors
def space_cmd(arch, problem, layer, batch, diagnose, samples, seed, factorization):
    """Print the size of each subspace of the mapspace before and after pruning (and with
    --diagnose why candidates are invalid, grouped by reason with one example each)."""
    from .search.space import Space
    arch_spec = load_arch(arch)
    lay = load_network(problem, batch).layer(layer)
    with naming_source(arch_spec):
        space = Space.build(lay, arch_spec, factorization)
    rows = [("subspace", "before pruning", "after pruning")] + space.report()
    click.echo(f"mapspace of {lay.name} on {arch_spec.name}")
    click.echo("\n".join(table(rows, right={1, 2})))
    if diagnose:
        from .search.diagnose import diagnose as run_diagnosis, diagnosis_text
        click.echo()
        click.echo(diagnosis_text(run_diagnosis(lay, arch_spec, samples, seed)))


def entry() -> None:
    """Console entry point: click's own usage errors become one `error:` line, exit code 2."""
    signal.signal(signal.SIGINT, signal.default_int_handler)     # see mapper/__init__.py
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
    if not out:
        raise MapperError("--out: an empty path; give the results folder")
    if scheduler and backend != "dask":
        raise MapperError("--scheduler: only used with --backend dask")
    arch_specs = [load_arch(a) for a in archs]
    networks = [load_layers(p, batch, density, density_preset) for p in problems]
    settings = {"algorithm": algorithm, "objective": objective, "seed": seed, "time_limit": time_limit}
    summary = sweep(arch_specs, networks, out, settings, workers=workers, resume=resume, backend=backend,
                    scheduler=scheduler, progress=Progress(enabled=not quiet))
    from .report import energy_text
    units = {a.name: a.energy_unit for a in arch_specs}
    rows = [("network", "arch", "energy", "energy/MAC", "latency ms", "inf/s", "inf/J", "util")]
    for net, per_arch in summary["networks"].items():
        for arch_name, t in per_arch.items():
            u = units.get(arch_name, "pJ")
            rows.append((net, arch_name, energy_text(t["energy_pj"], u), f"{t['pj_per_mac']:.3f} {u}",
                         f"{t['latency_ms']:.3f}", f"{t['inferences_per_s']:.1f}", f"{t['inferences_per_j']:.1f}",
                         f"{100 * t['utilization']:.1f}%" + ("" if t["complete"] else " (partial)")))
    click.echo("\n".join(table(rows, right=range(2, len(rows[0])))))
    for a in arch_specs:
        if unit_note(a):
            click.echo(unit_note(a))
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
    if json_out is not None:
        _check_writable(json_out)
    arch_spec = load_arch(arch)
    net, layers = load_layers(problem, batch, density, density_preset, layer)
    settings = dict(objective=objective, algorithm=algorithm, seed=seed, workers=workers, time_limit=time_limit,
                    progress=Progress(enabled=not quiet))
    if layer:
        result = eyexam(layers[0], arch_spec, **settings)
        click.echo(format_table(result))
        if json_out is not None:
            save_json(json_out, result)
        return
    results = network_eyexam(layers, arch_spec, **settings)
    for r in results:
        click.echo(format_table(r))
        click.echo()
    click.echo(format_network(network_summary(results)))
    if json_out is not None:
        save_json(json_out, results)


@main.command("plot")
@click.argument("results_dir", required=False, type=click.Path())
@click.option("--eyexam", "eyexam_json", type=click.Path(), help="Plot an Eyexam JSON as a waterfall.")
@click.option("--front", "front_json", type=click.Path(), help="Plot a `search --pareto --json` front.")
@click.option("-o", "--out", "out", type=click.Path(), help="PNG file to write.")
@click.option("--scale", type=click.Choice(["log", "per-mac", "linear"]), default="log", show_default=True,
              help="Sweep plots: energy per layer on a log axis, energy per MAC, or energy on a linear axis.")
@user_errors
def plot_cmd(results_dir, eyexam_json, front_json, out, scale):
    """Plot a sweep's energy per layer by storage level (each network, archs side by side),
    an Eyexam waterfall, or an energy-delay front."""
    from .plot import plot_eyexam, plot_front, plot_results
    if sum(map(bool, (results_dir, eyexam_json, front_json))) != 1:
        raise MapperError("plot: give one of RESULTS_DIR, --eyexam EYEXAM.json or --front FRONT.json")
    if front_json:
        path = plot_front(front_json, out)
    else:
        path = plot_eyexam(eyexam_json, out) if eyexam_json else plot_results(results_dir, out, scale)
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
    _check_writable(out, "-o")
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
    _check_writable(out, "-o")
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
@click.option("--layer", "-l", default=None, help="The layer of a whole-network result to export.")
@click.option("-o", "--out", required=True, type=click.Path(),
              help="Timeloop map.yaml to write, or a folder: one LAYER.yaml per layer of a whole-network result.")
@user_errors
def export_timeloop(result, arch, timeloop_problem, layer, out):
    """Our result document(s) -> Timeloop mappings (map.yaml) for timeloop-model."""
    from .result import result_layer
    from .result import write_text
    from .timeloop import problem_dims, read_results, result_to_timeloop
    if not out:
        raise MapperError("-o: an empty path; give a map.yaml file or a folder")
    dims = problem_dims(timeloop_problem) if timeloop_problem else None
    docs = read_results(result, layer)
    folder = Path(out).is_dir() or Path(out).suffix.lower() not in (".yaml", ".yml")
    if not folder:
        _check_writable(out, "-o")
    if len(docs) > 1 and not folder:
        names = ", ".join(str(result_layer(d)) for d in docs)
        raise MapperError(f"{result}: holds results for {len(docs)} layers ({names}): give --layer L for "
                          f"one map, or -o a folder (not a .yaml file) for one map per layer")
    used: set[str] = set()
    maps = []
    for i, doc in enumerate(docs):          # every map made (and checked) before any is written
        name = _file_name(result_layer(doc) or "map")
        if name in used:
            name = f"{name}_{i + 1}"            # two layer names that clean to the same file name
        used.add(name)
        target = Path(out) / f"{name}.yaml" if folder else Path(out)
        maps.append((target, result_to_timeloop(result, arch, dims=dims, doc=doc)[1]))
    for target, text in maps:
        write_text(target, text)
        click.echo(f"wrote {target}")


def _file_name(name: str) -> str:
    """A layer name as a file name inside the output folder (no path separators)."""
    import re
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "layer"
    return clean[:120]


@main.group("import")
def import_group():
    """Import networks from other formats (ONNX)."""


@import_group.command("onnx")
@click.argument("model", type=click.Path())
@click.option("-o", "--out", default=None, type=click.Path(), help="Network YAML to write (default: stdout).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Size of the model's symbolic batch dimension (default 1).")
@click.option("--name", default=None, help="Network name (default: the file's stem).")
@user_errors
def import_onnx_cmd(model, out, batch, name):
    """An ONNX model's MAC layers (Conv, Gemm, MatMul) -> our network file; other ops are listed."""
    from .onnx_import import import_onnx, network_yaml
    from .problem import parse_network
    from .result import write_text
    if out:
        if Path(out).is_dir():
            raise MapperError(f"{out}: is a folder; -o takes a file name")
        if Path(out).exists() and Path(out).resolve() == Path(model).resolve():
            raise MapperError(f"{out}: is the model itself; -o takes the network YAML to write")
        _check_writable(out)
    imported = import_onnx(model, batch, name)
    net = parse_network(imported.data, str(model))      # what we write must read back
    text = network_yaml(imported, net.macs)
    for line in imported.summary():
        click.echo(f"note: {model}: {line}", err=True)
    if out:
        write_text(out, text)
        click.echo(f"wrote {out}: {len(net.layers)} layers, {net.macs:,} MACs", err=True)
    else:
        click.echo(text, nl=False)


if __name__ == "__main__":  # pragma: no cover
    entry()
