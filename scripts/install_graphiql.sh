#!/usr/bin/env bash
# Installs the pinned GraphiQL explorer packages (static/explorer/package-lock.json) from the
# npm registry into static/explorer/node_modules/ (ignored by git), so /graphql serves the
# explorer without a CDN. Without npm, or when the install fails, it says so and exits 0:
# the server then falls back to Strawberry's CDN-hosted GraphiQL page.
# Set GRAPHIQL_ASSETS_REQUIRED=1 to make a failed install an error instead.
set -euo pipefail

cd "$(dirname "$0")/../static/explorer"
stamp=node_modules/.material-changes-lock

give_up() {
    echo "GraphiQL assets: $1; /graphql will load GraphiQL from a CDN instead." >&2
    if [ "${GRAPHIQL_ASSETS_REQUIRED:-0}" = "1" ]; then
        exit 1
    fi
    exit 0
}

if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
    echo "GraphiQL assets: up to date (static/explorer/node_modules)."
    exit 0
fi
command -v npm >/dev/null 2>&1 || give_up "npm not found (install Node.js to serve them locally)"

echo "GraphiQL assets: installing pinned packages from the npm registry…"
# --ignore-scripts: nothing from the registry runs on this machine; the UMD builds need no build.
if ! npm ci --omit=dev --no-audit --no-fund --ignore-scripts --loglevel=error; then
    give_up "npm ci failed"
fi
cp package-lock.json "$stamp"
echo "GraphiQL assets: installed into static/explorer/node_modules."
