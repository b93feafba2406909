#!/usr/bin/env bash
# Wall time (median of N runs), CPU time (user + sys) and peak memory (max RSS) of the median run,
# of restoreagent's start-up-bound commands, as in docs/performance.md:
#   scripts/time_commands.sh PHOTO [N]      (PHOTO: e.g. a 512x512 photo; N: runs, default 3)
# Runs from the repository root with .venv; the outputs go to a temporary folder.
set -euo pipefail
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
photo=${1:?usage: scripts/time_commands.sh PHOTO [N]}
n=${2:-3}
exe=${RESTOREAGENT_EXE:-.venv/bin/restoreagent}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
measure() {  # label, command...
  local label=$1; shift
  local rows=()
  for _ in $(seq "$n"); do
    /usr/bin/time -f "%e %M %U %S" -o "$tmp/t" "$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
    rows+=("$(tail -n 1 "$tmp/t")")
  done
  printf '%s\n' "${rows[@]}" | sort -n | awk -v label="$label" -v n="$n" '
    { w[NR]=$1; m[NR]=$2; c[NR]=$3+$4 } END { k=int((n+1)/2);
      printf "%-10s median %.2f s  cpu %.2f s  peak %.0f MB  (runs: ", label, w[k], c[k], m[k]/1024;
      for (i=1;i<=n;i++) printf "%s%s", w[i], (i<n?" ":""); print ")" }'
}
measure "--help" "$exe" --help
measure "plan" "$exe" plan "$photo"
measure "run --auto" "$exe" run "$photo" --auto -o "$tmp/out.png"
