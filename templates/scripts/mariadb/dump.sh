#!/bin/sh
# Dump mode, pre-backup (lib/my-dump.sh). acc appends the accounts and roles, dumped after the
# schemas (grants name their tables), as CREATE USER IF NOT EXISTS and GRANT (--system=users;
# --insert-ignore is what makes it IF NOT EXISTS) with the GRANTs' IDENTIFIED clause cut, which
# would reset a password: the accounts the image creates from its env on the fresh server (root,
# MARIADB_USER, healthcheck) keep their new passwords, every other account comes back with its
# password and grants. Accounts are not transactional: read just after the schemas' snapshot.
# The dump's own end line proves the run completed. Needs mariadb-dump 10.4.18/10.5.9 or later.
T=mariadb
acc() { X=$W cl "$d" --system=users --insert-ignore 2>"$e" | sed "/^GRANT /s/ IDENTIFIED .*'//" >>"$p"; }
. ./lib/my-dump.sh
