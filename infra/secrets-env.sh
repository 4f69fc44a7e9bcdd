#!/bin/sh
# Entry point: export every secret file /run/secrets/NAME whose NAME looks like an environment
# variable (FOO_BAR) as that variable, then run the command. Secrets thus come from files (Docker
# secrets) and reach the program through its environment, never through a command line, which
# every process on the host can read (`ps`, /proc/PID/cmdline).
set -eu
dir="${SECRETS_DIR:-/run/secrets}"
if [ -d "$dir" ]; then
  for file in "$dir"/*; do
    name=$(basename "$file")
    case "$name" in
      *[!A-Z0-9_]* | [0-9]* | "") continue ;;
    esac
    [ -f "$file" ] && export "$name=$(cat "$file")"
  done
fi
exec "$@"
