#!/usr/bin/env bash
# Installs what the SDK, its tests, the demo and the benchmarks need on a Debian machine (as root):
# system packages, then the npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then echo "install-deps: run as root (apt-get, network namespaces)" >&2; exit 1; fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  iproute2 iputils-ping iputils-arping nftables fuse3 libfuse3-dev linux-libc-dev stress-ng procps ca-certificates \
  cmake g++ make python3 pkg-config libssl-dev rsync \
  haproxy wrk >/dev/null
# Intel's intel-ipsec-mb (x86-64 only): the replication channel's AES-256-GCM with AVX-512 VAES,
# 2.5x OpenSSL's speed where the CPU has it; optional, the addon builds without it (OpenSSL).
if [ "$(dpkg --print-architecture)" = amd64 ]; then
  apt-get install -y -qq --no-install-recommends libipsec-mb-dev >/dev/null
fi
# haproxy and wrk: bench:farm compares the farm with HAProxy under the same wrk load.
# `npm install`, not `npm ci`: the registry this machine reaches serves no metadata for other
# platforms' optional packages (rollup's, esbuild's), so the lock file cannot list them and
# `npm ci` would refuse it. `npm install` installs exactly the locked versions for this platform.
npm install --no-audit --no-fund
# The native addon (raw ARP for the VIP; later the replication interceptor). cmake-js builds it
# offline against the node-api-headers package.
npm run build:native
