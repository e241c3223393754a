#!/usr/bin/env bash
# Check every relative link and anchor in the user documentation, offline: README.md, docs/*.md,
# certs/README.md and any chart README. remark-validate-links resolves links to files and to
# headings inside them from the files on disk, and never fetches a URL; html-anchors.mjs lets it
# see <a id="..."> anchors (the runbook's) too.
#
#   bash tests/docs/run.sh          # exit 1 and one line per broken link when any is broken
#
# The checker is pinned in tests/docs/package-lock.json. The first run (and a run after the lock
# changed) installs it with `npm ci` from the npm registry into tests/docs/node_modules; the check
# itself needs no network. Needs node and npm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "tests/docs/run.sh: $tool is not installed; install Node.js 18 or later (Debian: apt-get install -y nodejs npm)" >&2
    exit 2
  fi
done

# Install only when the lock file changed since the last successful install.
stamp="$here/node_modules/.docs-lock.sha256"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi

cd "$repo"
files=(README.md docs certs/README.md)
for f in charts/*/README.md; do
  if [ -f "$f" ]; then files+=("$f"); fi
done

# The repository is named so that links to its own GitHub pages are checked as local files too;
# naming it also keeps the plugin from asking git for a remote, which a fresh clone may lack.
plugin="$here/node_modules/remark-validate-links/index.js"
settings="repository:'velero-hook-injector/velero-hook-injector',root:'$repo'"
if ! "$here/node_modules/.bin/remark" --frail --quiet --no-stdout --no-color --no-config \
  --use "$here/html-anchors.mjs" --use "$plugin=$settings" "${files[@]}"; then
  echo "tests/docs/run.sh: broken links above (file:line, and what is missing); fix the link or the heading it points to" >&2
  exit 1
fi
echo "tests/docs/run.sh: every link and anchor in ${files[*]} resolves"
