#!/usr/bin/env bash
# The whole nightly loop on this machine, on 127.0.0.1 only (make nightly-demo):
# a Prefect server, the process work pool, the 'nightly' deployment, a worker, one
# night imaged through `prefect deployment run --watch`, then everything stopped.
#
#   examples/nightly-demo.sh [FOLDER]     (default: demo/nightly; KEEP=1 leaves the server
#                                          and worker running, and prints how to stop them)
set -euo pipefail
# Job control: each background process gets a process group of its own and keeps its
# SIGINT (a non-interactive shell would start it with SIGINT ignored, and Prefect turns
# the SIGTERM that stops a worker into a SIGINT).
set -m

repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$repo/.venv/bin
folder=$(mkdir -p "${1:-$repo/demo/nightly}" && cd "${1:-$repo/demo/nightly}" && pwd)
port=$("$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PREFECT_HOME=$folder/prefect-home
export PREFECT_API_URL=http://127.0.0.1:$port/api
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export IMGPIPE_REPO=$repo IMGPIPE_CONFIG=$folder/nightly.toml
# the server as docs/deployments.md sets one up: an auth string (a file only you can
# read), CSRF protection, its own web origin only
auth_file=$folder/prefect-auth
[ -s "$auth_file" ] || (umask 077; "$bin/python" -c 'import secrets; print(secrets.token_hex(32))' > "$auth_file")
PREFECT_API_AUTH_STRING=$(cat "$auth_file")
export PREFECT_API_AUTH_STRING

server='' worker=''
# shellcheck disable=SC2329  # run by the EXIT trap
stop_all() {
  for pid in $worker $server; do
    kill -TERM -- "-$pid" 2> /dev/null || continue
    for _ in $(seq 150); do kill -0 -- "-$pid" 2> /dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2> /dev/null || true
  done
}
if [ -z "${KEEP:-}" ]; then trap stop_all EXIT; fi

obs_id=$("$bin/python" -m imgpipe.demo night "$folder")
echo "== last night's demo observation: $obs_id ($folder/L2/$obs_id)"

PREFECT_SERVER_API_AUTH_STRING=$PREFECT_API_AUTH_STRING PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED=true \
  PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS=http://127.0.0.1:$port \
  "$bin/prefect" server start --host 127.0.0.1 --port "$port" > "$folder/server.log" 2>&1 &
server=$!
for _ in $(seq 240); do
  "$bin/python" -c 'import os, urllib.request; urllib.request.urlopen(os.environ["PREFECT_API_URL"] + "/health", timeout=2)' \
    > /dev/null 2>&1 && break
  kill -0 "$server" 2> /dev/null || { tail -20 "$folder/server.log"; exit 1; }
  sleep 0.5
done
echo "== Prefect server: http://127.0.0.1:$port (log: $folder/server.log)"

cd "$repo"
"$bin/prefect" --no-prompt work-pool create imgpipe --type process --overwrite > /dev/null
"$bin/prefect" --no-prompt deploy --prefect-file deployments/prefect.yaml --name nightly > "$folder/deploy.log" 2>&1 \
  || { tail -20 "$folder/deploy.log"; exit 1; }
echo "== deployment imgpipe/nightly (every day at 08:00 UTC; $folder/deploy.log)"

"$bin/prefect" worker start --pool imgpipe > "$folder/worker.log" 2>&1 &
worker=$!
echo "== worker of pool imgpipe (log: $folder/worker.log)"

echo "== prefect deployment run imgpipe/nightly --watch"
status=0
"$bin/prefect" deployment run imgpipe/nightly --watch --watch-timeout 600 || status=$?

echo "== where to look"
echo "   images:            $folder/images/$obs_id"
echo "   the night's report: $folder/images/report.html"
echo "   each job's log:    $folder/images/$obs_id/SW01.log, SW02.log"
echo "   the run in the UI: http://127.0.0.1:$port/runs (its artifact: imgpipe-summary; the UI asks for"
echo "                      the server's auth string, in $auth_file)"
if [ -n "${KEEP:-}" ]; then
  echo "   still running: server (process group $server), worker ($worker); stop them with"
  echo "   kill -TERM -- -$worker -$server"
else
  echo "== stopping the worker and the server"
fi
exit "$status"
