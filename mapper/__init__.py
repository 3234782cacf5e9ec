"""mapper: mapping-space search for DNN accelerators.

The Python API the `mapper` command is a thin layer over:

    import mapper
    net = mapper.load_network("alexnet")
    arch = mapper.load_arch("eyeriss_v1")
    cost = mapper.evaluate(net.layer("conv3"), arch, mapping)
"""
__version__ = "0.1.0"

from .arch import Arch, Fanout, Storage, load_arch, parse_arch  # noqa: E402
from .mapping import Loop, Mapping, MappingError, check, loop_nest_text, normalize, parse_mapping  # noqa: E402
from .model import Cost, Counts, evaluate  # noqa: E402
from .problem import DIMS, TENSORS, Layer, Network, layer_from_dims, load_network  # noqa: E402
from .spec import MapperError, SpecError  # noqa: E402

__all__ = ["Arch", "Fanout", "Storage", "load_arch", "parse_arch", "Loop", "Mapping", "MappingError",
           "check", "loop_nest_text", "normalize", "parse_mapping", "Cost", "Counts", "evaluate",
           "DIMS", "TENSORS", "Layer", "Network", "layer_from_dims", "load_network",
           "MapperError", "SpecError"]
