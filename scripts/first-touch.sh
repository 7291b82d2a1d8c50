#!/usr/bin/env bash
# How fast this machine hands a process memory it has not used lately: a
# probe of the machine, not of syncproof, used in docs/performance.md to
# explain why W10 takes more than 10x W1's time on some VMs.
#
#   scripts/first-touch.sh            # sizes 100 300 600 1500 MB, 15 s idle before each
#   FIRST_TOUCH_IDLE=0 scripts/first-touch.sh
#
# Each step waits (so that memory freed by the step before can be handed
# back to the host, as it is between two runs), then writes SIZE MB of zeros
# to a temporary file in ${TMPDIR:-/tmp} (into the page cache, as syncproof's
# temporary files are) and deletes it. A last step writes the largest size
# again with no wait, into memory just freed. On a VM whose balloon driver
# reports free pages to the host, memory beyond what the guest kept warm
# costs a fault on the host on first touch: the large sizes run several
# times slower per MB than the small ones and than the no-wait step.
set -euo pipefail
idle=${FIRST_TOUCH_IDLE:-15}
sizes=(100 300 600 1500)
dir=$(mktemp -d "${TMPDIR:-/tmp}/syncproof-first-touch.XXXXXX")
trap 'rm -rf "$dir"' EXIT

probe() {
  local mb=$1 start end
  start=$(date +%s.%N)
  dd if=/dev/zero of="$dir/probe" bs=1M count="$mb" status=none
  end=$(date +%s.%N)
  rm -f "$dir/probe"
  python3 -c "import sys; mb, s = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'{mb:6d} MB in {s:6.2f} s = {mb / s:7.0f} MB/s  ({sys.argv[4]})')" \
    "$mb" "$start" "$end" "$2"
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/Mem:/ {print $2}') GiB"
for mb in "${sizes[@]}"; do
  sleep "$idle"
  probe "$mb" "after ${idle} s idle"
done
probe "${sizes[-1]}" "again at once, into memory just freed"
