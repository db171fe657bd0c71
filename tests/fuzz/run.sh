#!/usr/bin/env bash
# Runs every fuzz target for a bounded time on top of its seed corpus (a copy: the committed
# seeds stay as they are). Usage: run.sh BUILD_DIR SECONDS
set -euo pipefail
build=${1:-build/fuzz}
seconds=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The control API's route targets split one budget between them (same harness, five routes);
# the request reader gets half of one.
route_seconds=$(( seconds / 5 > 5 ? seconds / 5 : 5 ))
half_seconds=$(( seconds / 2 > 5 ? seconds / 2 : 5 ))
for target in client_hello http_request http_gate http_edit rule packet dns_query control_request \
    control_native control_e2b control_brimble control_sandbox0 control_blaxel; do
  budget=$seconds
  case "$target" in
    control_native|control_e2b|control_brimble|control_sandbox0|control_blaxel) budget=$route_seconds ;;
    control_request|http_edit|packet) budget=$half_seconds ;;
  esac
  mkdir -p "$work/$target"
  cp "$here/corpus/$target/"* "$work/$target/" 2>/dev/null || true
  echo "fuzz_$target: ${budget}s"
  "$build/fuzz_$target" -max_total_time="$budget" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$work/" -print_final_stats=1 "$work/$target" 2>&1 |
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|SUMMARY|==[0-9]+==" || true
  if ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* >/dev/null 2>&1; then
    echo "fuzz_$target found a failing input:"; ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* 2>/dev/null
    mkdir -p "$here/../regressions/new" && cp "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$here/../regressions/new/" 2>/dev/null || true
    exit 1
  fi
done
