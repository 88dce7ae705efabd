#!/usr/bin/env bash
# Installs the Strapi 5 server the tests and the local stack write guest sessions to: the
# project in scripts/strapi (one `guest-session` collection type, SQLite through
# better-sqlite3 12, an API-token bootstrap in src/index.js, the admin panel never built),
# its npm dependencies pinned by scripts/strapi/package-lock.json, into a per-user cache
# outside the clone. Needs Node.js 20 or newer and npm (Strapi 5 refuses older Node; Debian
# 12's own nodejs is 18, so this script does not fall back to it).
#
#   install-strapi.sh        install (skips npm when the lock file is unchanged); prints the
#                            project folder on its last line
#   install-strapi.sh dir    prints the project folder only (STRAPI_DIR overrides)
#
# Measured on a 2-core machine shared with other builds: `npm ci` takes 7.5 min whether
# npm's cache is cold (451 s) or warm (446 s): 1377 packages, 711 MB, and better-sqlite3's
# native build; an installed project is checked in 0.6 s.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="5.54.0"
dir="${STRAPI_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/genesys-relay/strapi-$version}"
if [ "${1:-}" = dir ]; then echo "$dir"; exit 0; fi

src="$root/scripts/strapi"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "Strapi $version needs Node.js >= 20 and npm on PATH; neither was found." >&2
  exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "Strapi $version needs Node.js >= 20; \`node\` on PATH is $(node --version)." >&2
  exit 1
fi

# The project files are copied on every run (cheap), so an edited schema or bootstrap is
# picked up; npm runs only when the lock file changed.
mkdir -p "$dir/public/uploads"
cp "$src/package.json" "$src/package-lock.json" "$dir/"
rm -rf "$dir/config" "$dir/src"
cp -R "$src/config" "$src/src" "$dir/"
stamp="$(sha256sum "$src/package-lock.json" | cut -c1-16)"
if [ -f "$dir/.installed" ] && [ "$(cat "$dir/.installed")" = "$stamp" ] && [ -d "$dir/node_modules/@strapi/strapi" ]; then
  echo "strapi $version already installed at $dir" >&2
  echo "$dir"
  exit 0
fi
echo "installing strapi $version into $dir (npm ci)" >&2
start=$(date +%s)
rm -f "$dir/.installed"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
# better-sqlite3 must load on this Node (v13 segfaults on Node 20; the lock pins 12).
(cd "$dir" && node -e "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()") >&2
echo "$stamp" > "$dir/.installed"
echo "strapi $version installed in $(( $(date +%s) - start )) s" >&2
echo "$dir"
