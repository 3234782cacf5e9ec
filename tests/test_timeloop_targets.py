"""A Timeloop mapping whose directive targets a non-name (a list, a mapping) is one SpecError
naming the directive, not a TypeError (mapper.timeloop.mapping_from_timeloop)."""
import pytest

from mapper.arch import load_arch
from mapper.problem import layer_from_dims
from mapper.spec import SpecError
from mapper.timeloop import mapping_from_timeloop


@pytest.mark.parametrize("target", [[1], {"a": 1}, None, 3])
def test_a_target_that_is_not_a_level_name_is_a_spec_error(target):
    arch = load_arch("eyeriss_v1")
    layer = layer_from_dims("tiny", M=4, C=2, P=4, Q=4, R=3, S=3)
    data = {"mapping": [{"target": "DRAM", "type": "temporal", "factors": "C1"},
                        {"target": target, "type": "temporal", "factors": "C1"}]}
    with pytest.raises(SpecError) as info:
        mapping_from_timeloop(data, arch, layer, "map.yaml")
    assert "mapping[1].target" in str(info.value) and "no level" in str(info.value)
