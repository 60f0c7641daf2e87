#!/usr/bin/env bash
# Runs "$@" on a GPU machine without network access, from the project root, with what pack.sh put in
# .device/: Deno on PATH, its module cache (only cached modules: --cached-only is implied offline),
# the Vulkan loader beside NVIDIA's driver, and Vulkan as WebGPU's backend. Prints the adapter first.
#   bash bench/device/on_device.sh bash bench/device/run_all.sh report steps
set -eo pipefail
[ -f .device/deno.xz ] || { echo "on_device.sh: no .device/ here: run bench/device/pack.sh on a connected machine and copy .device/ beside the project" >&2; exit 2; }
root=/tmp/asvr_device
rm -rf "$root" && mkdir -p "$root/bin" "$root/libs"
xz -dc .device/deno.xz > "$root/bin/deno" && chmod +x "$root/bin/deno"
tar -C "$root" -xJf .device/deno_dir.tar.xz
for f in .device/debs/*.deb; do dpkg-deb -x "$f" "$root/libs"; done
export PATH=$root/bin:$PATH DENO_DIR=$root/deno_dir DENO_NO_UPDATE_CHECK=1
export LD_LIBRARY_PATH=$root/libs/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export DENO_WEBGPU_BACKEND=${DENO_WEBGPU_BACKEND:-vulkan}
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
  /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then export VK_DRIVER_FILES=$icd; fi
done
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg} && mkdir -p -m 700 "$XDG_RUNTIME_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
deno eval --cached-only 'const a = await navigator.gpu.requestAdapter();
console.log("adapter:", a?.info?.description || "none (see run_all.sh probe)")'
exec "$@"
