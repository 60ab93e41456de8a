#!/usr/bin/env bash
# Installs the Debian packages that the build and the tests need. Idempotent: quiet and fast
# when everything is already present.
set -euo pipefail
PKGS=(cmake make pkg-config g++ libuv1-dev libwebsockets-dev libwebsockets-evlib-uv liburing-dev
  libprotobuf-dev protobuf-compiler libboost-dev libcli11-dev doctest-dev libtomlplusplus-dev
  libcurl4-openssl-dev libssl-dev zlib1g-dev libsystemd-dev dpkg-dev
  python3 python3-websockets python3-protobuf python3-pytest python3-aiohttp
  clang libclang-rt-14-dev     # the sanitized unit tests and the libFuzzer targets (tests/fuzz)
  chromium fonts-dejavu-core)  # the browser tests (run as root: --no-sandbox) and screenshots
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
