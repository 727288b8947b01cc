"""The Docker SDK for Python against berthd: the network calls SDK users make.

Run by tests/sdk.rs as `python3 networks.py unix:///path/to/socket`; exits
non-zero with the failed assertion on stderr.
"""

import sys

import docker
from docker.errors import APIError, NotFound
from docker.types import IPAMConfig, IPAMPool


def main(base_url: str) -> None:
    client = docker.DockerClient(base_url=base_url, version="auto")
    assert client.ping() is True
    version = client.version()
    assert version["ApiVersion"] == "1.47", version

    names = sorted(n.name for n in client.networks.list())
    assert names == ["bridge", "host", "none"], names

    ipam = IPAMConfig(pool_configs=[IPAMPool(subnet="10.44.0.0/24", gateway="10.44.0.1", iprange="10.44.0.128/25")])
    net = client.networks.create(
        "sdk-net",
        driver="bridge",
        ipam=ipam,
        labels={"team": "sdk"},
        options={"com.docker.network.bridge.enable_icc": "true"},
        internal=False,
        attachable=True,
        check_duplicate=True,
    )
    assert len(net.id) == 64, net.id
    got = client.networks.get("sdk-net")
    assert got.id == net.id
    attrs = got.attrs
    assert attrs["Name"] == "sdk-net"
    assert attrs["Driver"] == "bridge"
    assert attrs["Scope"] == "local"
    assert attrs["Attachable"] is True
    assert attrs["Labels"] == {"team": "sdk"}, attrs["Labels"]
    config = attrs["IPAM"]["Config"][0]
    assert config["Subnet"] == "10.44.0.0/24", config
    assert config["Gateway"] == "10.44.0.1", config
    assert config["IPRange"] == "10.44.0.128/25", config
    assert attrs["Containers"] == {}, attrs["Containers"]

    # Prefix lookup and filters, as the SDK sends them.
    assert client.networks.get(net.id[:12]).name == "sdk-net"
    assert [n.name for n in client.networks.list(filters={"label": "team=sdk"})] == ["sdk-net"]
    assert [n.name for n in client.networks.list(names=["sdk-net"])] == ["sdk-net"]
    assert [n.name for n in client.networks.list(filters={"type": "custom"})] == ["sdk-net"]
    assert {n.name for n in client.networks.list(filters={"driver": "bridge"})} == {"bridge", "sdk-net"}

    # Errors are the SDK's exceptions with dockerd's statuses.
    try:
        client.networks.create("sdk-net", driver="bridge")
        raise AssertionError("duplicate name accepted")
    except APIError as e:
        assert e.status_code == 409, e
    try:
        client.networks.get("no-such-network")
        raise AssertionError("unknown network found")
    except NotFound as e:
        assert e.status_code == 404, e
    try:
        client.networks.create("sdk-bad", ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.45.0.0/24", gateway="10.46.0.1")]))
        raise AssertionError("gateway outside the subnet accepted")
    except APIError as e:
        assert 400 <= e.status_code < 500, e
    try:
        client.networks.get("bridge").remove()
        raise AssertionError("predefined network removed")
    except APIError as e:
        assert e.status_code == 403, e

    pruned = client.networks.prune(filters={"label": "team=other"})
    assert not pruned.get("NetworksDeleted"), pruned
    net.remove()
    try:
        client.networks.get("sdk-net")
        raise AssertionError("removed network still found")
    except NotFound:
        pass

    client.networks.create("sdk-prune", labels={"team": "sdk"})
    pruned = client.networks.prune(filters={"label": "team=sdk"})
    assert pruned["NetworksDeleted"] == ["sdk-prune"], pruned
    print("sdk networks: ok")


if __name__ == "__main__":
    main(sys.argv[1])
