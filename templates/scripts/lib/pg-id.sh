# shellcheck shell=sh
# ident: the identity of the database cluster into $now (empty when unreadable): the system
# identifier initdb chose, kept by every copy of its data directory (a volume snapshot, a
# retained volume) and new in every freshly initialised one. Dump mode records it with the dump
# (lib/seal.sh) and compares it at restore (lib/load-or-check.sh).
# shellcheck disable=SC2154 # via and o are set by pick and pq (lib/pg.sh)
# shellcheck disable=SC2034 # now is read by lib/seal.sh and lib/load-or-check.sh
ident() { now= && pq "$via" "SELECT system_identifier FROM pg_control_system()" && now=$o; }
