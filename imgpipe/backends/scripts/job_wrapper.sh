#!/usr/bin/env bash
# imgpipe's job wrapper: runs one WSClean argv on its node (see imgpipe/backends/job_script.py).
# Started as: bash --norc --noprofile -c "$(cat job_wrapper.sh)" imgpipe-job ARGS...
# $1 token, $2 env file ('' for none), $3 out dir, $4 log file, $5 kill grace (s),
# $6 max time (s, '' for none), $7 accounting launcher source ('' for none), $8... argv
# shellcheck disable=SC1090  # the env_file is the user's, known only at run time
exec 2>&1
trap '' PIPE  # a dead connection must not kill the wrapper before its watcher runs
tok=$1; t="@imgpipe-$1"; f=$2; d=$3; log=$4; grace=$5; maxt=$6; acct=$7; shift 7
# shellcheck disable=SC2088  # a literal "~/" at the start of the env_file path: the home on this node
case $f in "~/"*) f=$HOME/${f#"~/"};; esac
if [ -n "$f" ]; then source "$f" || { echo "$t setup env_file"; exit 126; }; fi
[ -d "$d" ] || mkdir -p -- "$d" || { echo "$t setup out_dir"; exit 126; }
: > "$log" || { echo "$t setup log"; exit 126; }
[ -n "${SLURM_JOB_ID:-}" ] && echo "$t slurm $SLURM_JOB_ID${SLURM_STEP_ID:+.$SLURM_STEP_ID}"
exec 4<&0 5> >(exec tee -- "$log") 6>&1
tee_pid=$!
[ -n "${SLURM_JOB_ID:-}" ] && echo "imgpipe: SLURM job $SLURM_JOB_ID${SLURM_STEP_ID:+ step $SLURM_STEP_ID} on $(hostname)" >&5
py=python3  # or imgpipe's own interpreter when set: a pyenv shim costs 0.1 s a call
[ -n "${IMGPIPE_PYTHON:-}" ] && [ -x "$IMGPIPE_PYTHON" ] && py=$IMGPIPE_PYTHON
# From here bash's own stderr could only carry its notice of the job's death by a
# signal ("Segmentation fault ..."), printed whenever it happens to reap the job: it
# would race the control lines, and imgpipe reports the signal itself.
exec 2> /dev/null
if [ -n "$acct" ] && command -v "$py" > /dev/null 2>&1; then
  (trap - PIPE; exec setsid -- "$py" -I -S -c "$acct" "$tok" "$@") < /dev/null 4<&- >&5 2>&5 5>&- &
else
  (trap - PIPE; exec setsid -- "$@") < /dev/null 4<&- >&5 2>&5 5>&- 6>&- &
fi
pid=$!
echo "$t started $pid"
(
  SECONDS=0
  while :; do
    if [ -n "$maxt" ]; then
      left=$((maxt - SECONDS))
      [ "$left" -le 0 ] && { echo "$t timeout $maxt" >&6; break; }
      read -r -t "$left" -u 4 cmd g; r=$?
      [ "$r" -gt 128 ] && { echo "$t timeout $maxt" >&6; break; }
    else
      read -r -u 4 cmd g; r=$?
    fi
    [ "$r" -ne 0 ] && break
    [ "$cmd" = stop ] && break
  done
  kill -TERM -- "-$pid"; sleep "${g:-$grace}" 6>&-; kill -KILL -- "-$pid"
) 5>&- > /dev/null 2>&1 &
watcher=$!
wait "$pid" 2> /dev/null; rc=$?
kill "$watcher" 2> /dev/null
exec 5>&-
wait "$tee_pid"
echo "$t exit $rc"; times; echo "$t end"
exit "$rc"
