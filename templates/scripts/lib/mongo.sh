# shellcheck shell=sh
# MongoDB shell settings from the container's environment: the official image
# (MONGO_INITDB_ROOT_USERNAME/PASSWORD[_FILE]) or Bitnami (MONGODB_ROOT_USER,
# MONGODB_ROOT_PASSWORD[_FILE], MONGODB_PORT_NUMBER), on 127.0.0.1. Credentials go into a 0600
# script file for the length of one shell call, never on argv.
msh=$(command -v mongosh || command -v mongo) || die "neither mongosh nor mongo in PATH"
rd() { if [ -n "$2" ]; then cat "$2" || die "cannot read $2"; else printf '%s' "$1"; fi; }
u=$(rd "${MONGO_INITDB_ROOT_USERNAME:-}" "${MONGO_INITDB_ROOT_USERNAME_FILE:-}")
pw=$(rd "${MONGO_INITDB_ROOT_PASSWORD:-}" "${MONGO_INITDB_ROOT_PASSWORD_FILE:-}")
if [ -z "$u" ] && [ -n "${MONGODB_ROOT_PASSWORD:-}${MONGODB_ROOT_PASSWORD_FILE:-}" ]; then
  u=${MONGODB_ROOT_USER:-root}
  pw=$(rd "${MONGODB_ROOT_PASSWORD:-}" "${MONGODB_ROOT_PASSWORD_FILE:-}")
fi
port=${MONGODB_PORT_NUMBER:-27017}
D=${TMPDIR:-/tmp}/velero-hook-$T
[ -d "$D" ] || mkdir -m 700 "$D" || die "cannot create $D"
js() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
# m JS: runs JS (after authenticating, if credentials are set) and prints what it printed.
# Files the hook creates are private to it (the call file holds the password).
umask 077
m() {
  f=$D/call-$$.js
  {
    [ -z "$u" ] || printf 'if (!db.getSiblingDB("admin").auth(%s, %s)) { print("authentication failed"); quit(3) }\n' "$(js "$u")" "$(js "$pw")"
    printf '%s\n' "$1"
  } >"$f" || return 1
  "$msh" --quiet --norc --host 127.0.0.1 --port "$port" "$f" 2>&1
  rc=$?
  rm -f "$f"
  return $rc
}
