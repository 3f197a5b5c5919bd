#!/usr/bin/env bash
# Builds govulncheck's vulnerability database where vuln.go.dev cannot be
# reached. Its source is the Go team's own: the module golang.org/x/vulndb
# (from the Go module proxy) carries every report as OSV JSON in data/osv,
# and its cmd/indexdb writes them out as the database vuln.go.dev serves
# (index/db.json, index/modules.json, index/vulns.json, ID/*.json).
#
# Usage: .ci/vulndb.sh [DIR]. Builds into DIR (default: a cache directory),
# again only when the proxy's newest x/vulndb changed, and prints two
# lines: the database directory (for govulncheck -db file://DIR), then
# where it comes from and how fresh it is. Exits non-zero when there is no
# database to give.
set -euo pipefail

out=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/mailchimp-heap/vulndb}
# The indexing tool is pinned (it is built once and stays in the build
# cache); the data is the newest x/vulndb the proxy has.
INDEXDB=golang.org/x/vulndb/cmd/indexdb@v0.0.0-20261105234957-e22db6528018

# say NOTE: the two lines of output.
say() {
  local modified
  modified=$(sed -n 's/.*"modified": *"\([^"]*\)".*/\1/p' "$out/index/db.json")
  echo "$out"
  echo "golang.org/x/vulndb $(cat "$out/VERSION"): $(find "$out/ID" -name '*.json' | wc -l) entries, as of $modified ($1)"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Outside any module or workspace: this is a download, not a dependency.
cd "$tmp"
export GOWORK=off

if ! info=$(go mod download -json golang.org/x/vulndb@latest); then
  echo "$info" >&2
  echo "vulndb.sh: golang.org/x/vulndb is not to be had from the Go module proxy" >&2
  [ -s "$out/index/db.json" ] || exit 1
  say "an earlier build: the proxy did not answer"
  exit 0
fi
field() { sed -n 's/^[[:space:]]*"'"$1"'": "\([^"]*\)".*/\1/p' <<<"$info" | head -1; }
version=$(field Version)
# The commit's time (the .info file): how fresh the database is.
committed=$(sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "$(field Info)")
src=$(field Dir)/data/osv
[ -d "$src" ] || { echo "vulndb.sh: golang.org/x/vulndb $version has no data/osv" >&2; exit 1; }

if [ "$(cat "$out/VERSION" 2>/dev/null)" != "$version" ] || [ ! -s "$out/index/db.json" ]; then
  rm -rf "$out.new"
  mkdir -p "$(dirname "$out")"
  go run "$INDEXDB" -vulns "$src" -out "$out.new" >&2 \
    || { echo "vulndb.sh: indexdb could not build the database from $src" >&2; exit 1; }
  # data/osv leaves the entries' times zero (vuln.go.dev fills them in from
  # the repository's history): the database is as of x/vulndb's commit,
  # which govulncheck then prints as "DB updated".
  printf '{"modified":"%s"}' "$committed" >"$out.new/index/db.json"
  gzip -c "$out.new/index/db.json" >"$out.new/index/db.json.gz"
  echo "$version" >"$out.new/VERSION"
  rm -rf "$out"
  mv "$out.new" "$out"
fi
say "the newest the Go module proxy serves"
