# shellcheck shell=sh
# Pre-backup for MySQL and MariaDB; the entry script sets LOCK. The lock is session-scoped, so a
# hook that takes it and exits protects nothing. A detached client holds it: it reads its SQL
# from a FIFO that the helper keeps open until the post hook asks for release (or HOLD seconds
# pass, or the client dies), then reads end-of-file and quits, which ends the session and the
# lock at once. The hook succeeds
# only once that client has printed the marker selected after the lock statements: the lock is
# held. lock_wait_timeout=10 keeps a lock queued behind a long query from stalling writers long.
HOLD=${VHI_LOCK_HOLD_SECONDS:-300}
HV=VHI_LOCK_HOLD_SECONDS
. ./lib/common.sh
[ "$HOLD" -ge 0 ] 2>/dev/null || die "$HV must be a number of seconds, got '$HOLD'"
. ./lib/my.sh
. ./lib/hold.sh
! held || { say "lock already held; reusing it"; exit 0; }
k=locked-$$
(
  # A client that died leaves a broken pipe: report it as an outcome instead of dying of it.
  trap '' HUP PIPE
  t=$(date +%s)
  rm -f "$D/in"
  mkfifo "$D/in" || exit
  my -n --skip-reconnect <"$D/in" >"$D/log" 2>&1 &
  c=$!
  exec 3>"$D/in"
  echo "SET SESSION lock_wait_timeout=10; $LOCK; SELECT '$k';" >&3
  wait_release $c
  # A last query proves that the session holding the lock lived to the end (no reconnect).
  echo "SELECT '$k-end';" >&3
  exec 3>&-
  wait $c
  grep -qx $k-end "$D/log" && o="released the lock after $(($(date +%s) - t))s" || o="ERROR the lock session ended early: $(tail -n 2 "$D/log")"
  echo "$o" >"$D/outcome"
) </dev/null >/dev/null 2>&1 &
echo $! >"$D/pid"
until_s 25
until grep -qx $k "$D/log" 2>/dev/null; do
  kill -0 $! 2>/dev/null || {
    : >"$D/release"
    den "$(cat "$D/log")" now
    die "no lock is held, the holder exited: $(cat "$D/log")"
  }
  late && { : >"$D/release"; die "no lock is held after 25s: $(cat "$D/log")"; }
  sleep 1
done
say "$LOCK held until the post hook, at most ${HOLD}s"
