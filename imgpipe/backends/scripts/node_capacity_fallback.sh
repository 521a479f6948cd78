# shellcheck shell=bash
# A node's cores and memory for a node without the node agent: its python3 runs
# node_capacity.py (given as $1) when it has one; else the shell reads the CPUs it may use
# and the RAM (no cgroup limit then: the line says so).
# Prints "<cores> <memory kB> <limited by>".
if command -v python3 > /dev/null 2>&1 && python3 -I -S -c "$1" 2> /dev/null; then
  exit 0
fi
cores=$(nproc 2> /dev/null || getconf _NPROCESSORS_ONLN 2> /dev/null || echo 0)
mem=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2> /dev/null)
echo "${cores:-0} ${mem:-0} machine,no python3: cgroup limits not read"
