#!/usr/bin/env bash
# A before/after in one invocation: the same benchmark on commit REV and on the working tree,
# interleaved, N rounds (default 3). The benchmark script is the working tree's, for both
# sides; each side runs in its own tree (its rlreason package, its recipes).
#
#   bash benchmarks/ab.sh REV [N] -- benchmarks/learner_bench.py --quick
#   bash benchmarks/ab.sh HEAD~3 3 -- benchmarks/learner_bench.py --quick --warm-start
#
# Each run's output is printed under a header naming its side and round.
set -euo pipefail
rev=$1; shift
rounds=3
if [[ $1 != "--" ]]; then rounds=$1; shift; fi
[[ $1 == "--" ]] || { echo "usage: ab.sh REV [N] -- SCRIPT ARGS..." >&2; exit 2; }
shift
here=$(git rev-parse --show-toplevel)
script=$(realpath "$1"); shift
before=$(mktemp -d)/before
git -C "$here" worktree add -q --detach "$before" "$rev"
trap 'git -C "$here" worktree remove --force "$before"' EXIT
echo "before: $rev ($(git -C "$before" rev-parse --short HEAD)); after: the working tree of $(git -C "$here" rev-parse --short HEAD)"
echo "host: $(cd "$here" && python3 -c 'from benchmarks.host import host; print(host())'), $(nproc) cores; $(date -u '+%Y-%m-%d %H:%M UTC')"
for ((i = 1; i <= rounds; i++)); do
  for side in before after; do
    tree=$before; [[ $side == after ]] && tree=$here
    echo "== $side, round $i"
    (cd "$tree" && PYTHONPATH="$tree" python3 "$script" "$@" --out "/tmp/ab-$side-$i.json")
  done
done
