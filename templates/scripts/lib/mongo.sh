# shellcheck shell=sh
# MongoDB shell settings from the container's environment, on 127.0.0.1:
# - the official image's MONGO_INITDB_ROOT_USERNAME/PASSWORD[_FILE]; else Bitnami's
#   MONGODB_ROOT_USER (default root) / MONGODB_ROOT_PASSWORD[_FILE]; else, on a Bitnami
#   replica-set secondary or arbiter, MONGODB_INITIAL_PRIMARY_ROOT_USER/PASSWORD[_FILE] (or
#   MONGODB_PRIMARY_ROOT_*), the root user it gets from the primary. A _FILE wins over the value.
#   They go into a 0600 script file for the length of one shell call, never on argv.
# - port MONGODB_PORT_NUMBER, else 27017; the shell flags (TLS) in MONGODB_SHELL_EXTRA_FLAGS,
#   else MONGODB_CLIENT_EXTRA_FLAGS, split into words as the Bitnami image does.
msh=$(command -v mongosh || command -v mongo) || die "neither mongosh nor mongo in PATH"
rd() { if [ -n "$2" ]; then cat "$2" || die "cannot read $2"; else printf '%s' "$1"; fi; }
u=$(rd "${MONGO_INITDB_ROOT_USERNAME:-}" "${MONGO_INITDB_ROOT_USERNAME_FILE:-}")
pw=$(rd "${MONGO_INITDB_ROOT_PASSWORD:-}" "${MONGO_INITDB_ROOT_PASSWORD_FILE:-}")
if [ -z "$u" ] && [ -n "${MONGODB_ROOT_PASSWORD:-}${MONGODB_ROOT_PASSWORD_FILE:-}" ]; then
  u=${MONGODB_ROOT_USER:-root}
  pw=$(rd "${MONGODB_ROOT_PASSWORD:-}" "${MONGODB_ROOT_PASSWORD_FILE:-}")
fi
a=${MONGODB_INITIAL_PRIMARY_ROOT_PASSWORD:-${MONGODB_PRIMARY_ROOT_PASSWORD:-}}
b=${MONGODB_INITIAL_PRIMARY_ROOT_PASSWORD_FILE:-${MONGODB_PRIMARY_ROOT_PASSWORD_FILE:-}}
if [ -z "$u" ] && [ -n "$a$b" ]; then
  u=${MONGODB_INITIAL_PRIMARY_ROOT_USER:-${MONGODB_PRIMARY_ROOT_USER:-root}}
  pw=$(rd "$a" "$b")
fi
fl=${MONGODB_SHELL_EXTRA_FLAGS:-${MONGODB_CLIENT_EXTRA_FLAGS:-}}
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
  # shellcheck disable=SC2086 # flags, split as the image splits them
  "$msh" --quiet --norc --host 127.0.0.1 --port "$port" $fl "$f" 2>&1
  rc=$?
  rm -f "$f"
  return $rc
}
# refused OUTPUT: dies when mongod refused the login (or wants one): no retry helps.
refused() {
  case $1 in
  *[Aa]uthentication\ failed* | *requires\ authentication* | *Unauthorized*) die "mongod refused the login${u:+ of $u} ($1): set MONGODB_ROOT_PASSWORD[_FILE] (Bitnami) or MONGO_INITDB_ROOT_USERNAME/PASSWORD[_FILE] to the root user's" ;;
  esac
}
