# shellcheck shell=sh
# S: the server's own schemas, never dumped nor counted as user data (the mysql schema holds the
# accounts and system tables the image creates on a fresh server).
# shellcheck disable=SC2034 # read by the entry scripts
S="'mysql','information_schema','performance_schema','sys'"
