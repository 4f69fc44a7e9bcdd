#!/bin/sh
# Entry point: export every secret file /run/secrets/NAME whose NAME looks like an environment
# variable (FOO_BAR) as that variable, then run the command. Secrets thus come from files (Docker
# secrets) and reach the program through its environment, never through a command line, which
# every process on the host can read (`ps`, /proc/PID/cmdline).
# A secret that cannot be read stops the container with a message: `export "X=$(cat f)"` would
# hide cat's failure (export's status is 0) and start the service with an empty password. The
# files must be readable by the container's user (uid 10001 in the adaptflow image):
# infra/README.md, "Secrets".
set -eu
dir="${SECRETS_DIR:-/run/secrets}"
fail() { echo "secrets-env.sh: $1 (running as uid $(id -u)); infra/README.md, \"Secrets\"" >&2; exit 1; }
if [ -d "$dir" ]; then
  for file in "$dir"/*; do
    name=$(basename "$file")
    case "$name" in
      *[!A-Z0-9_]* | [0-9]* | "") continue ;;
    esac
    [ -f "$file" ] || fail "secret $file is not a file (a missing bind-mount source becomes a folder)"
    value=$(cat "$file" 2>/dev/null) || fail "cannot read secret $file: make it readable by this user"
    [ -n "$value" ] || fail "secret $file is empty"
    export "$name=$value"
  done
fi
exec "$@"
