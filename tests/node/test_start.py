"""Starting a node: bad peer addresses are refused up front, and a start that fails half way
unwinds everything it started (host, nursery, tasks) and raises its own error."""

from __future__ import annotations

import pytest

from dndm_p2p import Node, NodeConfig
from dndm_p2p.errors import ConfigError, Unavailable


@pytest.mark.parametrize(
    ("addr", "text"),
    [
        ("/ip4/127.0.0.1/tcp/4001", "does not name the peer: add /p2p/<peer id>"),
        ("127.0.0.1:4001", "is not a multiaddr"),
        ("/p2p/12D3KooWA5t7rsP1S2PCAFYLjTnBw8ndKgfJxoeCRq16c4H6J9X5", "no address to reach"),
    ],
)
@pytest.mark.parametrize("field", ["peers", "bootstrap"])
def test_a_peer_address_that_names_no_peer_is_refused_naming_the_field(
    addr: str, text: str, field: str
) -> None:
    with pytest.raises(ConfigError, match=text) as caught:
        NodeConfig(**{field: (addr,)})
    assert caught.value.field == f"NodeConfig.{field}"
    assert "12D3KooW" in str(caught.value)  # it shows what a good address looks like


PEER = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWA5t7rsP1S2PCAFYLjTnBw8ndKgfJxoeCRq16c4H6J9X5"


@pytest.mark.parametrize("where", ["wanted peers", "components"])
async def test_a_start_that_fails_half_way_unwinds_and_raises_its_own_error(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_: object) -> None:
        raise Unavailable("could not start")

    async def fail_async(*_: object) -> None:
        fail()

    if where == "wanted peers":  # once the host and the nursery run
        monkeypatch.setattr("dndm_p2p.node.node.peer_of", fail)
    else:
        monkeypatch.setattr(Node, "_start_components", fail_async)
    node = Node(NodeConfig(name="half", peers=(PEER,)))
    with pytest.raises(Unavailable, match="could not start"):  # itself, not in a group
        async with node:
            pytest.fail("the block must not run")
    assert node.router.closed
    assert not node.host.get_network().listeners  # the host was closed
    # and the suite's leak check fails this test if a task of the node is still alive
