"""The Docker SDK for Python against berthd: the container calls SDK users
make, with networks and published ports.

Run by tests/sdk.rs as `python3 containers.py unix:///socket ROOTFS_TAR`.
"""

import sys

import docker
from docker.errors import APIError, NotFound


def main(base_url: str, rootfs: str) -> None:
    client = docker.DockerClient(base_url=base_url, version="auto")
    with open(rootfs, "rb") as f:
        client.api.import_image_from_data(f.read(), repository="busybox", tag="latest")
    image = client.images.get("busybox:latest")
    assert "busybox:latest" in image.tags, image.tags

    # Run to completion: create, start, wait, logs, remove.
    out = client.containers.run("busybox", ["echo", "hello from berthd"], remove=True)
    assert out == b"hello from berthd\n", out

    # An unknown image: the SDK tries a pull, which berthd refuses (no registry).
    try:
        client.containers.run("no-such-image", "true")
        raise AssertionError("unknown image ran")
    except APIError as e:
        assert e.status_code in (404, 501), e

    net = client.networks.create("sdk-app", driver="bridge")
    web = client.containers.run(
        "busybox",
        ["httpd", "-f", "-p", "80", "-h", "/etc"],
        detach=True,
        name="sdk-web",
        ports={"80/tcp": 18090},
        network="sdk-app",
        labels={"role": "web"},
    )
    web.reload()
    assert web.status == "running", web.status
    assert web.attrs["Config"]["Hostname"] == web.id[:12], web.attrs["Config"]
    assert web.attrs["HostConfig"]["Runtime"] == "runc", web.attrs["HostConfig"]
    settings = web.attrs["NetworkSettings"]
    ip = settings["Networks"]["sdk-app"]["IPAddress"]
    assert ip.startswith(net.attrs["IPAM"]["Config"][0]["Subnet"].rsplit(".", 2)[0]), (ip, net.attrs)
    assert settings["Networks"]["sdk-app"]["MacAddress"].startswith("02:42:"), settings
    binding = web.ports["80/tcp"][0]
    assert binding["HostPort"] == "18090", web.ports
    assert binding["HostIp"] == "0.0.0.0", web.ports

    # Another container on the network reaches the first by name.
    out = client.containers.run("busybox", ["wget", "-q", "-O", "-", "http://sdk-web/hostname"], network="sdk-app", remove=True)
    assert out.strip() == web.id[:12].encode(), out

    assert [c.name for c in client.containers.list(filters={"label": "role=web"})] == ["sdk-web"]
    assert [c.name for c in client.containers.list(filters={"network": "sdk-app"})] == ["sdk-web"]

    # Live connect and disconnect of the default bridge.
    bridge = client.networks.get("bridge")
    bridge.connect(web)
    web.reload()
    assert set(web.attrs["NetworkSettings"]["Networks"]) == {"sdk-app", "bridge"}, web.attrs["NetworkSettings"]
    bridge.disconnect(web)
    web.reload()
    assert set(web.attrs["NetworkSettings"]["Networks"]) == {"sdk-app"}

    try:
        net.remove()
        raise AssertionError("network in use removed")
    except APIError as e:
        assert e.status_code == 403, e

    web.stop(timeout=0)
    web.reload()
    assert web.status == "exited", web.status
    web.remove()
    try:
        client.containers.get("sdk-web")
        raise AssertionError("removed container still found")
    except NotFound:
        pass
    net.remove()
    print("sdk containers: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
