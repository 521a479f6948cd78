#!/usr/bin/env bash
# imgpipe's job wrapper: runs one WSClean argv on its node (see imgpipe/backends/job_script.py).
# Started as: bash --norc --noprofile -c "$(cat job_wrapper.sh)" imgpipe-job ARGS...
# $1 token, $2 env file ('' for none), $3 out dir, $4 log file, $5 kill grace (s),
# $6 max time (s, '' for none), $7 scratch folder ('' for none), $8 least free space there (kB),
# $9 accounting launcher source ('' for none), $10 variables to set before the env_file
# (NAME=number words: the job's thread counts), $11 number N of MS links, then N (link, MS)
# pairs (made in the scratch folder: imgpipe/core/scratch.py), then the number M of the job's
# MSs and their M paths (each must be on this node), then the column WSClean reads ('' for
# none: each MS must have it), then the argv
# shellcheck disable=SC1090  # the env_file is the user's, known only at run time
exec 2>&1
trap '' PIPE  # a dead connection must not kill the wrapper before its watcher runs
tok=$1; t="@imgpipe-$1"; f=$2; d=$3; log=$4; grace=$5; maxt=$6; scr=$7; minfree=$8; acct=$9; vars=${10}; nlinks=${11}; shift 11
links=("${@:1:2*nlinks}"); shift $((2 * nlinks))
nms=$1; shift
mss=("${@:1:nms}"); shift "$nms"
col=$1; shift
for v in $vars; do  # only NAME=digits: nothing here can run a command
  case $v in *[!A-Za-z0-9_=]*|=*|*=|*=*[!0-9]*) ;; [A-Za-z_]*=*) export "${v?}";; esac
done
# shellcheck disable=SC2088  # a literal "~/" at the start of the env_file path: the home on this node
case $f in "~/"*) f=$HOME/${f#"~/"};; esac
if [ -n "$f" ]; then source "$f" || { echo "$t setup env_file"; exit 126; }; fi
[ -d "$d" ] || mkdir -p -- "$d" || { echo "$t setup out_dir"; exit 126; }
: > "$log" || { echo "$t setup log"; exit 126; }
[ -n "${SLURM_JOB_ID:-}" ] && echo "$t slurm $SLURM_JOB_ID${SLURM_STEP_ID:+.$SLURM_STEP_ID}"
exec 4<&0 5> >(exec tee -- "$log") 6>&1
tee_pid=$!
[ -n "${SLURM_JOB_ID:-}" ] && echo "imgpipe: SLURM job $SLURM_JOB_ID${SLURM_STEP_ID:+ step $SLURM_STEP_ID} on $(hostname)" >&5
setup_failed() { echo "$t setup $*"; exec 5>&-; wait "$tee_pid"; exit 126; }
for m in "${mss[@]}"; do  # read where the MS is: one not (yet) on this node is said so, WSClean not run
  [ -e "$m" ] || { echo "imgpipe: Measurement Set not found on $(hostname): $m" >&5; setup_failed no_ms "$m"; }
  # its main table's description holds each column name as casacore writes a string: a
  # 4-byte big-endian length, then the name (imgpipe/facts/ms_columns.py); grep exits 1
  # only when it is not there (2: no table.dat, or no grep -P here: WSClean will say); a
  # table.dat that is not casacore's is left to WSClean too
  if [ -n "$col" ] && [ "$(od -An -N4 -tx1 -- "$m/table.dat" 2> /dev/null | tr -d ' \n')" = bebebebe ]; then
    LC_ALL=C grep -qaP -- "$(printf '\\x00\\x00\\x00\\x%02x' "${#col}")\\Q$col\\E" "$m/table.dat" 2> /dev/null
    [ $? -eq 1 ] && { echo "imgpipe: Measurement Set without the $col column on $(hostname): $m" >&5; setup_failed no_column "$col" "$m"; }
  fi
done
if [ -n "$scr" ]; then  # the job's own scratch folder (imgpipe/core/scratch.py)
  top=${scr%/*}
  mkdir -p -- "$top" || setup_failed temp_dir
  for old in "$top"/imgpipe-*/; do  # left by a run that died: its owner is gone
    [ -f "${old}.imgpipe-owner" ] || continue
    read -r opid otok < "${old}.imgpipe-owner" || continue
    if [ -r "/proc/$opid/cmdline" ]; then
      tr '\0' ' ' < "/proc/$opid/cmdline" | grep -qF -- "$otok" && continue
    elif [ ! -d /proc/self ]; then  # no /proc here: a live pid may be its owner
      kill -0 "$opid" 2> /dev/null && continue
    fi
    rm -rf -- "${old%/}" && echo "imgpipe: removed ${old%/}, left by an imgpipe run that died" >&5
  done
  if [ "${minfree:-0}" -gt 0 ]; then
    avail=$(df -Pk -- "$top" 2> /dev/null | awk 'NR == 2 { print $4 }')
    case $avail in ''|*[!0-9]*) ;; *) [ "$avail" -lt "$minfree" ] && setup_failed temp_space "$avail" "$minfree";; esac
  fi
  rm -rf -- "$scr"
  if ! { mkdir -- "$scr" && echo "$$ $tok" > "$scr/.imgpipe-owner"; }; then setup_failed temp_dir; fi
  for ((i = 0; i < 2 * nlinks; i += 2)); do  # MSs sharing a base name, each under a name of its own
    ln -s -- "${links[i + 1]}" "${links[i]}" || setup_failed temp_dir
    echo "imgpipe: ${links[i]} -> ${links[i + 1]}" >&5
  done
  echo "imgpipe: scratch folder $scr on $(hostname)" >&5
fi
oom_kills() {  # the kernel's count of OOM kills (cgroup limits too), to tell one from another SIGKILL
  local k v
  while read -r k v; do [ "$k" = oom_kill ] && { echo "$v"; return; }; done < /proc/vmstat
} 2> /dev/null
oom0=$(oom_kills)
py=python3  # or imgpipe's own interpreter when set: a pyenv shim costs 0.1 s a call
[ -n "${IMGPIPE_PYTHON:-}" ] && [ -x "$IMGPIPE_PYTHON" ] && py=$IMGPIPE_PYTHON
# From here bash's own stderr could only carry its notice of the job's death by a
# signal ("Segmentation fault ..."), printed whenever it happens to reap the job: it
# would race the control lines, and imgpipe reports the signal itself.
exec 2> /dev/null
rf=''
if [ -n "$acct" ] && command -v "$py" > /dev/null 2>&1; then
  # its rusage line goes to a file, shown after the job's last output has left tee (written
  # straight to stdout it could land inside a last line that tee had not passed on yet)
  rf=$(mktemp "${TMPDIR:-/tmp}/imgpipe-rusage.XXXXXX") || rf=/dev/null
  (trap - PIPE; exec setsid -- "$py" -I -S -c "$acct" "$tok" "$@") < /dev/null 4<&- >&5 2>&5 5>&- 6> "$rf" &
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
if [ "$rc" -eq 137 ] && [ -n "$oom0" ]; then oom1=$(oom_kills); [ "${oom1:-0}" -gt "$oom0" ] && echo "$t oom"; fi
if [ "$rc" -ne 0 ]; then  # free space where it wrote (out dir, scratch), before anything is removed: a full disk?
  for w in "$d" ${scr:+"$scr"}; do
    timeout 10 df -Pk -- "$w" 2> /dev/null | { read -r _; read -r _ size _ avail _ mnt && echo "$t space $avail $size $mnt"; }  # (a hung NFS mount: 10 s at most)
  done
fi
[ -n "$scr" ] && rm -rf -- "$scr"
exec 5>&-
wait "$tee_pid"
if [ -n "$rf" ] && [ "$rf" != /dev/null ]; then cat -- "$rf"; rm -f -- "$rf"; fi
echo "$t exit $rc"; times; echo "$t end"
exit "$rc"
