#!/usr/bin/env bash
# Runs the whole suite on another Node.js major (22, 24, ...) in a throwaway clone of HEAD, the way a user
# on that Node would install floodgate: better-sqlite3 13 (what npm picks on Node >= 22; 12 can abort a
# Node 24 process, see the README's support paragraph) instead of the lockfile's 12, which CI keeps for
# Node 20. CI runs Node 20 only; this is how "keeps working on 22 and 24" is checked.
#
#   scripts/test-on-node.sh 24            # Node 24 from the npm registry (the `node` package), then test
#   KEEP=1 scripts/test-on-node.sh 22     # keep the clone afterwards (its path is printed)
set -euo pipefail

major="${1:-}"
if ! [[ "$major" =~ ^[0-9]+$ ]] || ((major < 22)); then
  echo "usage: $0 <node major, 22 or later> (Node 20 is what CI and the lockfile run: use .ci/run)" >&2
  exit 2
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
# npx installs the `node` package of that major and prints the binary's path (last line: npx may log first).
node_bin="$(npx -y "node@$major" -p process.execPath | tail -n 1)"
node_dir="$(dirname "$node_bin")"
echo "test-on-node: Node $("$node_bin" --version) at $node_bin"

clone="$(mktemp -d "${TMPDIR:-/tmp}/floodgate-node$major.XXXXXX")"
cleanup() {
  if [[ "${KEEP:-}" == 1 ]]; then echo "test-on-node: clone kept at $clone"; else rm -rf "$clone"; fi
}
trap cleanup EXIT
git clone -q "$repo" "$clone"
cd "$clone"

export PATH="$node_dir:$PATH"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export FLOODGATE_REQUIRE_REDIS=1

# Every package that loads better-sqlite3 takes 13 here (Node-API prebuilds, nothing to compile); the
# clone's lockfile follows, so this install cannot be frozen whatever CI says.
for dir in packages/payment-retry examples/group-buy-shop bench; do
  (cd "$dir" && npm pkg set dependencies.better-sqlite3=^13.2.0)
done
CI= npx -y pnpm@10 install --no-frozen-lockfile >/dev/null
echo "test-on-node: better-sqlite3 $(node -p "require('./packages/payment-retry/node_modules/better-sqlite3/package.json').version")"

npx -y pnpm@10 test
