import pytest

from imgpipe.core.errors import ConfigError
from imgpipe.core.nodes import expand_nodes, is_local


@pytest.mark.parametrize(
    "spec, nodes",
    [
        ("localhost", ["localhost"]),
        ("node[101-104]", ["node101", "node102", "node103", "node104"]),
        ("node[101-102,110],gpu1", ["node101", "node102", "node110", "gpu1"]),
        ("node[08-10]", ["node08", "node09", "node10"]),
        ("a, b ,a", ["a", "b"]),
        ("rack[1-2]x", ["rack1x", "rack2x"]),
    ],
)
def test_expand(spec, nodes):
    assert expand_nodes(spec) == nodes


@pytest.mark.parametrize("spec", ["", " , ", "node[3-1]", "node[a-b]", "n]x", "my node", "-oProxyCommand=x"])
def test_bad_node_lists(spec):
    with pytest.raises(ConfigError):
        expand_nodes(spec)


def test_is_local():
    assert is_local("localhost") and is_local("127.0.0.1")
    assert not is_local("node101")
