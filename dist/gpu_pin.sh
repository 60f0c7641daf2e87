#!/usr/bin/env bash
# Pins each MPI rank to its own GPU, then runs the given command:
#
#   mpirun -np 8 dist/gpu_pin.sh deno task train run.ts
#   mpiexec -n 8 dist/gpu_pin.sh deno task train run.ts
#   srun --ntasks-per-node=8 dist/gpu_pin.sh deno task train run.ts
#
# Deno's WebGPU offers no choice of adapter, so the choice is made below it, in Mesa's Vulkan
# device-select layer (VK_LAYER_MESA_device_select): DRI_PRIME=pci-DDDD_BB_DD_F names the device by
# its PCI address and MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1 hides every other device.
#
# The rank's place on its node comes from the launcher: OMPI_COMM_WORLD_LOCAL_RANK (Open MPI),
# MPI_LOCALRANKID (MPICH and Intel MPI's Hydra), MV2_COMM_WORLD_LOCAL_RANK (MVAPICH), SLURM_LOCALID
# (srun); without any of them the local rank is 0. Local rank R takes the R-th GPU of the list
#   ASVR_GPU_BUS_IDS   comma-separated PCI bus ids, when set, e.g. 0000:3b:00.0,0000:5e:00.0; else
#   nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader
# Machines without nvidia-smi (AMD, or a container without it) set ASVR_GPU_BUS_IDS, e.g.
#   export ASVR_GPU_BUS_IDS=$(rocm-smi --showbus | awk '/PCI Bus/ {print $NF}' | paste -sd, -)
#   export ASVR_GPU_BUS_IDS=$(lspci -D | awk '/VGA|3D controller|Display controller/ {print $1}' | paste -sd, -)
#
# Silent on success; ASVR_GPU_PIN_VERBOSE=1 prints the choice to stderr.

set -euo pipefail

me="gpu_pin.sh"

fail() {
  printf '%s: %s\n' "$me" "$1" >&2
  exit 2
}

if [ "$#" -eq 0 ]; then
  fail "no command given. Usage: mpirun -np N dist/gpu_pin.sh deno task train run.ts"
fi

# This process's rank on its node, from the first launcher variable that holds an integer.
local_rank=""
rank_source=""
for name in OMPI_COMM_WORLD_LOCAL_RANK MPI_LOCALRANKID MV2_COMM_WORLD_LOCAL_RANK SLURM_LOCALID; do
  value="${!name:-}"
  value="${value//[[:space:]]/}"
  if [[ "$value" =~ ^[0-9]+$ ]]; then
    local_rank=$((10#$value))
    rank_source="$name"
    break
  fi
done
if [ -z "$local_rank" ]; then
  local_rank=0
  rank_source="no launcher variable"
fi

# The node's GPUs, as PCI bus ids, one a line.
if [ -n "${ASVR_GPU_BUS_IDS:-}" ]; then
  ids_source="ASVR_GPU_BUS_IDS"
  bus_ids="${ASVR_GPU_BUS_IDS//,/$'\n'}"
elif command -v nvidia-smi >/dev/null 2>&1; then
  ids_source="nvidia-smi"
  if ! bus_ids="$(nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader 2>&1)"; then
    fail "nvidia-smi --query-gpu=pci.bus_id failed: ${bus_ids}
Fix the NVIDIA driver, or name the GPUs yourself: export ASVR_GPU_BUS_IDS=0000:3b:00.0,0000:5e:00.0"
  fi
else
  fail "nvidia-smi not found and ASVR_GPU_BUS_IDS is not set, so this node's GPUs are unknown.
Install the NVIDIA driver's nvidia-smi, or set the PCI bus ids of this node's GPUs, comma-separated:
  export ASVR_GPU_BUS_IDS=0000:3b:00.0,0000:5e:00.0
  (AMD: export ASVR_GPU_BUS_IDS=\$(rocm-smi --showbus | awk '/PCI Bus/ {print \$NF}' | paste -sd, -))
  (any: export ASVR_GPU_BUS_IDS=\$(lspci -D | awk '/VGA|3D controller|Display controller/ {print \$1}' | paste -sd, -))"
fi

ids=()
while IFS= read -r line; do
  line="${line//[[:space:]]/}"
  [ -n "$line" ] && ids+=("$line")
done <<<"$bus_ids"

count=${#ids[@]}
if [ "$count" -eq 0 ]; then
  fail "${ids_source} listed no GPUs. Set ASVR_GPU_BUS_IDS to this node's PCI bus ids, e.g. 0000:3b:00.0,0000:5e:00.0"
fi
if [ "$local_rank" -ge "$count" ]; then
  fail "local rank ${local_rank} (${rank_source}) has no GPU of its own: ${ids_source} lists ${count} GPU(s) on this node (${ids[*]}).
Start at most ${count} rank(s) per node (mpirun --map-by ppr:${count}:node, srun --ntasks-per-node=${count}), or list more GPUs in ASVR_GPU_BUS_IDS."
fi

bus_id="${ids[$local_rank]}"

# [domain:]bus:device.function, hexadecimal; nvidia-smi prints an 8-digit domain, lspci -D a 4-digit
# one, lspci without -D none (domain 0).
if [[ ! "$bus_id" =~ ^(([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$ ]]; then
  fail "${ids_source} gave '${bus_id}' for local rank ${local_rank}, which is not a PCI bus id like 0000:3b:00.0"
fi
domain="${BASH_REMATCH[2]:-0}"
bus="${BASH_REMATCH[3]}"
device="${BASH_REMATCH[4]}"
func="${BASH_REMATCH[5]}"

# Mesa's tag is pci-%04x_%02x_%02x_%1u, lower-case. No trailing '!': the releases that understand it
# also match the tag without it, and older ones compare the whole string, so '!' would match nothing
# there; MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1 already leaves only the chosen device visible.
tag="$(printf 'pci-%04x_%02x_%02x_%u' "$((16#$domain))" "$((16#$bus))" "$((16#$device))" "$func")"

export DRI_PRIME="$tag"
export MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1

if [ "${ASVR_GPU_PIN_VERBOSE:-}" = "1" ]; then
  printf '%s: local rank %s (%s) -> GPU %s of %s, bus id %s (%s) -> DRI_PRIME=%s MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1\n' \
    "$me" "$local_rank" "$rank_source" "$local_rank" "$count" "$bus_id" "$ids_source" "$tag" >&2
fi

exec "$@"
