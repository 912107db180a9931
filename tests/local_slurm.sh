#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the tests and for trying `--executor slurm`.
#   tests/local_slurm.sh install     Debian's slurmctld, slurmd, slurm-client and munge, where absent (root)
#   tests/local_slurm.sh start DIR   its configuration, state and logs in DIR; the daemons started as root;
#                                    returns once the node takes jobs. Point clients at it with
#                                    SLURM_CONF=DIR/slurm.conf (sbatch, squeue, scancel, lcbench).
#   tests/local_slurm.sh stop DIR    the daemons it started, stopped
# The cluster listens on the loopback address only, on ports of its own (16817, 16818), so that a
# site's Slurm on the same machine is left alone. No accounting database: as on many small clusters.
set -euo pipefail

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "local_slurm.sh: Slurm is not installed, and installing it needs root and apt-get" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
}

start() {
    local dir=$1 host cpus memory
    [ "$(id -u)" = 0 ] || { echo "local_slurm.sh: the daemons run as root" >&2; return 1; }
    mkdir -p "$dir/state" "$dir/spool"
    dir=$(cd "$dir" && pwd)
    host=$(hostname -s)
    cpus=$(getconf _NPROCESSORS_ONLN)  # not nproc: it answers OMP_NUM_THREADS
    memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    cat > "$dir/slurm.conf" <<EOF
ClusterName=lcbench-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# Ended jobs stay visible to squeue and scontrol for 10 minutes (there is no accounting to ask later)
MinJobAge=600
# A cancelled job's processes get SIGTERM, then SIGKILL this many seconds later (30 by default)
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    if ! pgrep -x munged >/dev/null; then
        mkdir -p /run/munge /var/log/munge /var/lib/munge
        chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
        if id munge >/dev/null 2>&1; then
            runuser -u munge -- munged
        else
            munged --force
        fi
    fi
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 100); do
        if sinfo -h -N -o %T 2>/dev/null | grep -qx idle; then
            return 0
        fi
        sleep 0.2
    done
    echo "local_slurm.sh: the node did not come up; see $dir/slurmctld.log and $dir/slurmd.log" >&2
    sinfo -N >&2 || true
    return 1
}

stop() {
    local dir=$1 name
    for name in slurmd slurmctld; do
        if [ -f "$dir/$name.pid" ]; then
            kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
        fi
    done
    for name in slurmd slurmctld; do
        for _ in $(seq 50); do
            [ -f "$dir/$name.pid" ] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null || break
            sleep 0.1
        done
    done
}

case "${1:-}" in
    install) install ;;
    start) start "${2:?start needs a folder}" ;;
    stop) stop "${2:?stop needs a folder}" ;;
    *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
