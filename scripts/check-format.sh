#!/usr/bin/env bash
# Fails when clang-format would change any C++ file of ours.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r file; do
  if ! clang-format --dry-run -Werror "$file" >/dev/null 2>&1; then
    echo "clang-format would change: $file"
    bad=1
  fi
done < <(git ls-files '*.cpp' '*.hpp' '*.h' 2>/dev/null || find proxy tests bench -name '*.[ch]pp')
exit $bad
