#!/usr/bin/env bash
# Packs into .device/ (git-ignored) what a GPU machine without network access needs to run the
# measurements: the Deno binary on PATH (xz), the Vulkan loader and libglvnd (Debian packages, for
# NVIDIA's Vulkan driver) and a Deno module cache holding the bench entry points and the tests. Run it
# from the project root on a connected Debian/Ubuntu x86-64 machine, then on the GPU machine, with
# .device/ copied beside the project:
#   bash bench/device/on_device.sh bash bench/device/run_all.sh report steps
# The cache leaves out what the measurements never load (onnxruntime-web's 136 MB of WebAssembly, the
# musl builds of sharp): files only, so that Deno still finds every package of deno.lock.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
deno_bin=$(readlink -f "$(command -v deno)")
rm -rf .device && mkdir -p .device/debs
xz -T0 -6 -c "$deno_bin" > .device/deno.xz
(cd .device/debs && apt-get download libvulkan1 libglvnd0 > /dev/null)

cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
DENO_DIR=$cache/deno_dir deno cache bench/*.ts cli/*.ts $(git ls-files '*_test.ts') > /dev/null
npm=$cache/deno_dir/npm/registry.npmjs.org
find "$npm"/onnxruntime-web/*/dist "$npm"/@img/sharp-*linuxmusl* -type f ! -name package.json -delete
tar -C "$cache" -cJf .device/deno_dir.tar.xz deno_dir
du -sh .device/*; du -sh .device
