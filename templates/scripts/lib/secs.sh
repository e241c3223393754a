# shellcheck shell=sh
# secs NAME VALUE: a setting read from the container must be a whole number of seconds.
secs() { case $2 in '' | *[!0-9]*) die "$1 must be a number of seconds, got '$2'" ;; esac; }
