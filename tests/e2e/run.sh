#!/usr/bin/env bash
# End-to-end suite: needs root (network namespaces, iptables TPROXY).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/e2e.py" "${1:-$here/../../build/release}" "${@:2}"
