#!/usr/bin/env bash
# Installs what the browser page's build and tests need: the wasm32-unknown-unknown Rust
# target, and Chromium with ChromeDriver from Debian's packages (chromium, chromium-driver).
# Idempotent: skips what is already there.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "setup: adding Rust target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "setup: installing chromium and chromium-driver"
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromium --version
