"""The `mapper` command: a thin layer over the Python API.

Every user error (a bad file, an impossible constraint, a mapping that does not fit) is
printed as one line on stderr with exit code 2; no traceback, no partial output file.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from . import __version__
from .arch import load_arch
from .mapping import check, loop_nest_text, parse_mapping
from .model import evaluate
from .problem import DENSITY_KEYS, load_network
from .report import breakdown_table, layer_table, totals_line
from .result import document, write_json
from .spec import MapperError, SpecError, load_yaml


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
        if key not in DENSITY_KEYS:
            raise SpecError("", "--density", f"'{key}' is not a tensor with a density; use "
                            f"{' or '.join(DENSITY_KEYS)} (e.g. weights=0.4,inputs=0.6)")
        try:
            d = float(value)
        except ValueError:
            raise SpecError("", "--density", f"{key}={value!r} is not a number") from None
        if not 0.0 < d <= 1.0:
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
              help="Mapping file (our JSON/YAML, or a result document).")
@click.option("--json", "json_out", type=click.Path(), help="Write the result document here.")
@user_errors
def evaluate_cmd(arch, problem, batch, layer, mapping_path, json_out):
    """Evaluate one mapping: loop nest, per-level breakdown and totals."""
    arch_spec = load_arch(arch)
    lay = load_network(problem, batch).layer(layer)
    mapping = parse_mapping(load_yaml(mapping_path), arch_spec, mapping_path)
    check(mapping, lay, arch_spec, mapping_path)
    cost = evaluate(lay, arch_spec, mapping, validate=False)
    click.echo(loop_nest_text(mapping, lay, arch_spec))
    click.echo()
    click.echo(breakdown_table(cost))
    click.echo()
    click.echo(totals_line(cost, arch_spec))
    if json_out:
        write_json(json_out, document(lay, arch_spec, mapping, cost, {"mapping": mapping.to_dict()}))


if __name__ == "__main__":  # pragma: no cover
    main()
