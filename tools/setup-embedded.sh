#!/usr/bin/env bash
# Installs what the Cortex-M4 build and its QEMU run need: the thumbv7em-none-eabihf Rust
# target and qemu-system-arm (board mps2-an386). Idempotent: skips what is already there.
set -euo pipefail

if ! rustup target list --installed | grep -qx thumbv7em-none-eabihf; then
    echo "setup: adding Rust target thumbv7em-none-eabihf"
    rustup target add thumbv7em-none-eabihf
fi

if ! command -v qemu-system-arm >/dev/null 2>&1; then
    echo "setup: installing qemu-system-arm"
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq qemu-system-arm >/dev/null
fi
qemu-system-arm --version | head -n 1
