# The README's two commands: `make run` and `make test`.
# Both install the Debian packages they need first (only those missing).

SHELL := /bin/bash

# What berthd needs at run time and to build (containerd-client needs protoc).
RUN_PACKAGES := iptables iproute2 containerd runc protobuf-compiler
# What the integration tests use besides: nsenter/setpriv, curl, timeout,
# a static busybox for container images.
TEST_PACKAGES := $(RUN_PACKAGES) util-linux coreutils curl busybox-static

# Extra berthd flags for `make run`, e.g. make run ARGS="--bip 10.5.0.1/24 -D"
ARGS ?=

.PHONY: run test deps-run deps-test docker-cli docker-sdk

run: deps-run
	cargo build --release --bin berthd
	./target/release/berthd $(ARGS)

test: deps-test docker-cli docker-sdk
	cargo test --workspace

# Installs the named packages that dpkg does not report as installed;
# `apt-get update` runs only when something is missing. Non-interactive.
define apt_install
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing </dev/null; \
	fi
endef

deps-run:
	$(call apt_install,$(RUN_PACKAGES))

deps-test:
	$(call apt_install,$(TEST_PACKAGES))

# The tests drive the real docker CLI. When it is missing, only the client
# binary is taken from Debian's docker.io package: installing the package
# itself would start a dockerd on the host.
docker-cli:
	@if ! command -v docker >/dev/null; then \
	  echo "installing the docker CLI from docker.io"; \
	  tmp=$$(mktemp -d) && cd "$$tmp" && \
	  apt-get update -qq && apt-get download docker.io </dev/null && \
	  dpkg-deb -x docker.io_*.deb root && \
	  install -m 0755 root/usr/bin/docker /usr/local/bin/docker && \
	  rm -rf "$$tmp"; \
	fi

# tests/sdk.rs drives berthd with the Docker SDK for Python, from PyPI when
# the python3 on PATH lacks it (python3 and pip from Debian when missing).
docker-sdk:
	@python3 -c 'import docker' 2>/dev/null || { \
	  echo "installing the Docker SDK for Python"; \
	  python3 -m pip --version >/dev/null 2>&1 || { \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip </dev/null; \
	  }; \
	  python3 -m pip install --quiet docker 2>/dev/null || \
	  python3 -m pip install --quiet --break-system-packages docker; \
	}
