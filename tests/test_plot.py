"""Plots (`mapper.plot`): energy per layer by storage level from a sweep's summary.csv, and
the Eyexam waterfall. The summary.csv is written by hand (two archs with different level
columns, empty where a level does not apply); the Eyexam JSON comes from `eyexam` on a
tiny layer. The PNGs are checked by their signature, header and size."""
from __future__ import annotations

import struct
import sys

import pytest

from mapper.arch import load_arch
from mapper.eyexam import eyexam, save_json
from mapper.plot import OTHER, plot_eyexam, plot_results, read_summary
from mapper.problem import layer_from_dims
from mapper.spec import MapperError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

HEADER = ("network,arch,layer,macs,energy_pj,pj_per_mac,cycles,utilization,edp,status,seconds,"
          "energy_DRAM_pj,energy_GLB_pj,energy_ifmap_spad_pj,energy_weights_spad_pj,energy_psum_spad_pj,"
          "energy_iact_spad_pj")
ROWS = [
    # eyeriss_v1 has ifmap_spad, not iact_spad
    "alexnet,eyeriss_v1,conv1,1000,5000.0,5.0,100,0.5,500000.0,optimal,1.5,2000.0,1000.0,300.0,200.0,100.0,",
    "alexnet,eyeriss_v1,conv2,2000,9000.0,4.5,150,0.6,1350000.0,budget,2.0,4000.0,2000.0,500.0,400.0,300.0,",
    # eyeriss_v2 has iact_spad, not ifmap_spad
    "alexnet,eyeriss_v2,conv1,1000,4000.0,4.0,80,0.4,320000.0,optimal,1.0,1500.0,800.0,,150.0,120.0,80.0",
    "alexnet,eyeriss_v2,conv2,2000,7000.0,3.5,90,0.7,630000.0,optimal,0.0,3000.0,1200.0,,250.0,220.0,130.0",
]


def png_info(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return len(data), width, height


@pytest.fixture
def results_dir(tmp_path):
    d = tmp_path / "sweep"
    d.mkdir()
    (d / "summary.csv").write_text("\n".join([HEADER] + ROWS) + "\n")
    return d


@pytest.fixture(scope="module")
def tiny_eyexam():
    layer = layer_from_dims("tiny", M=8, C=4, P=6, Q=6, R=3, S=3)
    return eyexam(layer, load_arch("eyeriss_v1"), time_limit=20)


def test_read_summary_stacks_levels_per_arch(results_dir):
    data = read_summary(results_dir / "summary.csv")
    assert list(data) == ["eyeriss_v1", "eyeriss_v2"]
    v1, v2 = data["eyeriss_v1"], data["eyeriss_v2"]
    assert v1["labels"] == v2["labels"] == ["conv1", "conv2"]
    assert v1["levels"] == ["DRAM", "GLB", "ifmap_spad", "weights_spad", "psum_spad"]
    assert v2["levels"] == ["DRAM", "GLB", "weights_spad", "psum_spad", "iact_spad"]
    # MAC+network = energy_pj - sum of the arch's levels, by hand:
    assert v1["energy"][OTHER] == pytest.approx([5000 - 3600, 9000 - 7200])
    assert v2["energy"][OTHER] == pytest.approx([4000 - 2650, 7000 - 4800])
    assert v1["energy"]["psum_spad"] == [100.0, 300.0]


def test_plot_results_writes_a_png(results_dir, tmp_path):
    out = tmp_path / "out" / "energy.png"
    assert plot_results(results_dir, out) == out
    size, width, height = png_info(out)
    assert 10_000 < size < 5_000_000
    assert width >= 600 and height >= 400          # one panel: the network, both archs side by side
    assert [p.name for p in out.parent.iterdir()] == ["energy.png"]     # no temporary left over
    # default output path
    default = plot_results(results_dir)
    assert default == results_dir / "energy_by_level.png" and png_info(default)[0] > 10_000


def test_plot_results_errors_name_the_file(tmp_path, results_dir):
    with pytest.raises(MapperError, match=r"summary\.csv"):
        plot_results(tmp_path / "nowhere", tmp_path / "x.png")
    (results_dir / "summary.csv").write_text("network,arch,layer\nalexnet,eyeriss_v1,conv1\n")
    with pytest.raises(MapperError, match=r"summary\.csv.*missing column.*energy_pj"):
        plot_results(results_dir, tmp_path / "x.png")
    (results_dir / "summary.csv").write_text("\n".join([HEADER, ROWS[0].replace("5000.0", "lots")]) + "\n")
    with pytest.raises(MapperError, match=r"summary\.csv: row 2, column energy_pj"):
        plot_results(results_dir, tmp_path / "x.png")
    (results_dir / "summary.csv").write_text(HEADER + "\n")
    with pytest.raises(MapperError, match=r"summary\.csv: no rows"):
        plot_results(results_dir, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_eyexam_single_and_network(tiny_eyexam, tmp_path):
    one = tmp_path / "tiny.json"
    save_json(one, tiny_eyexam)
    out = plot_eyexam(one)
    assert out == tmp_path / "tiny.png"
    size, width, height = png_info(out)
    assert 10_000 < size < 5_000_000 and width >= 600 and height >= 400
    net = tmp_path / "net.json"
    save_json(net, [tiny_eyexam, tiny_eyexam])
    out2 = plot_eyexam(net, tmp_path / "plots" / "net.png")
    assert png_info(out2)[0] > 10_000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["net.png"]


def test_plot_eyexam_errors_name_the_file(tmp_path):
    with pytest.raises(MapperError, match="missing.json"):
        plot_eyexam(tmp_path / "missing.json", tmp_path / "x.png")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(MapperError, match="bad.json"):
        plot_eyexam(tmp_path / "bad.json", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_is_a_user_error(results_dir, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import matplotlib -> ImportError
    with pytest.raises(MapperError, match=r"install the \[plot\] extra"):
        plot_results(results_dir, tmp_path / "x.png")
