#!/usr/bin/env bash
# Runs one fault case of test/ownership.test.ts many times per store and counts how often it
# holds: the test suite runs each case once, which cannot show a rare failure. Not run in CI.
#
#   scripts/ownership-loop.sh [sigstop|kill-resume] [N] [stores]
#
#   sigstop      a runner stopped (SIGSTOP) past its lease and resumed ends with FencedError and
#                writes nothing (default N = 50); prints "k/N fenced" per store
#   kill-resume  a runner SIGKILLed and started again at once through a shell restores and ends
#                with the exact state (default N = 20); prints "k/N exact" per store
#
# `stores` is "embedded postgres" unless given (one of them, to run the two side by side).
# The output of every failed run is kept in a temporary folder, named on the last line.
set -u
cd "$(dirname "$0")/.."

mode=${1:-sigstop}
case $mode in
  sigstop) title='a runner stopped past its lease cannot complete or prune once resumed; the new owner.s result is exact'; word=fenced; runs=${2:-50} ;;
  kill-resume) title='a runner SIGKILLed and started again at once through a shell restores the latest checkpoint; exact final state'; word=exact; runs=${2:-20} ;;
  *) echo "usage: $0 [sigstop|kill-resume] [N] [stores]" >&2; exit 2 ;;
esac

logs=$(mktemp -d "${TMPDIR:-/tmp}/weir-ownership-loop-XXXXXX")
for store in ${3:-embedded postgres}; do
  held=0
  for ((i = 1; i <= runs; i++)); do
    log="$logs/$mode-$store-$i.log"
    # Anchored at both ends: the case itself, not its negative controls.
    if npx tap --grep="^lease \\($store\\) - $title\$" test/ownership.test.ts >"$log" 2>&1 && grep -q '^# { total: [1-9][0-9]*, pass: ' "$log"; then
      held=$((held + 1))
      rm -f "$log"
    else
      echo "$store run $i failed: $log" >&2
    fi
  done
  echo "$store: $held/$runs $word"
done
echo "logs of failed runs: $logs"
