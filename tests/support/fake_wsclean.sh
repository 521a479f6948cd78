#!/bin/bash
# Stand-in for WSClean (orchestration and fault tests only): records where and when it ran.
# TRACE is replaced by the trace file's path when the fixture writes this script (SSH does
# not pass the environment on). It sleeps for the number of seconds in TRACE.seconds and
# exits with the status in TRACE.exit (0 if absent). Given -temp-dir, it writes a file there
# as WSClean's reorder step would, and records the folder in TRACE.temp. With TRACE.products
# present it writes what a deconvolving WSClean has written early on: a dirty image and a
# temporary model image (<name>-0000-dirty.fits, <name>-model-I-0000-tmp.fits).
if [ $# -eq 0 ]; then exec wsclean; fi
echo "${IMGPIPE_NODE:-local} $$ start $(date +%s.%N) ${*: -1}" >> "TRACE"
echo "fake wsclean on ${IMGPIPE_NODE:-local}: $*"
args=("$@")
for i in "${!args[@]}"; do
  if [ "${args[$i]}" = -temp-dir ]; then
    tmp=${args[$((i + 1))]}
    last=${*: -1}
    [ -d "$tmp" ] && echo "reorder" > "$tmp/${last##*/}-part0000-I-b0.tmp" && echo "$tmp" >> "TRACE.temp"
  fi
  if [ "${args[$i]}" = -name ] && [ -e "TRACE.products" ]; then
    name=${args[$((i + 1))]}
    echo "SIMPLE" > "$name-0000-dirty.fits" && echo "SIMPLE" > "$name-model-I-0000-tmp.fits"
  fi
done
# With TRACE.hold present, it waits (up to 2 min) for TRACE.go before its sleep.
if [ -e "TRACE.hold" ]; then for _ in $(seq 1200); do [ -e "TRACE.go" ] && break; sleep 0.1; done; fi
# "end" only when the sleep ran out: SLURM (proctrack/linuxproc) signals a cancelled step's
# processes one by one, and a sleep killed before its bash must not look like a finished job
sleep "$(cat "TRACE.seconds" 2> /dev/null || echo 1)" || exit
echo "${IMGPIPE_NODE:-local} $$ end $(date +%s.%N) ${*: -1}" >> "TRACE"
exit "$(cat "TRACE.exit" 2> /dev/null || echo 0)"
