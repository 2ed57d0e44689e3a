#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, for tests/test_slurm.py.
#
#   one_node_cluster.sh install   apt-get install slurm-wlm and munge (needs root)
#   one_node_cluster.sh start DIR write DIR/slurm.conf, start munged, slurmctld, slurmd
#   one_node_cluster.sh stop DIR  stop them
#
# No slurmdbd: job states come from squeue, so finished jobs must stay in
# squeue long enough (MinJobAge) for Snakemake's executor to see them end.
set -euo pipefail

command=$1
dir=${2:-}

case "$command" in
install)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q slurm-wlm munge >/dev/null
    ;;
start)
    mkdir -p "$dir"/state "$dir"/spool "$dir"/munge
    host=$(hostname -s)
    cpus=$(nproc)
    memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    cat > "$dir/slurm.conf" <<CONF
ClusterName=dacpipe
SlurmctldHost=$host
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
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    # srun inside a job reads the default config path, not SLURM_CONF.
    mkdir -p /etc/slurm
    ln -sf "$dir/slurm.conf" /etc/slurm/slurm.conf
    if ! pgrep -x munged >/dev/null; then
        [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key --force
        chown root:root /etc/munge/munge.key; chmod 600 /etc/munge/munge.key
        mkdir -p /run/munge
        munged --force --key-file=/etc/munge/munge.key --socket=/run/munge/munge.socket.2 \
               --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/seed"
    fi
    slurmctld -f "$dir/slurm.conf"
    slurmd -f "$dir/slurm.conf"
    for _ in $(seq 60); do
        if SLURM_CONF="$dir/slurm.conf" sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            exit 0
        fi
        sleep 1
    done
    echo "one_node_cluster: the node did not come up; see $dir/slurmctld.log and $dir/slurmd.log" >&2
    exit 1
    ;;
stop)
    for name in slurmd slurmctld munged; do
        [ -f "$dir/$name.pid" ] && kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
    done
    [ "$(readlink /etc/slurm/slurm.conf)" = "$dir/slurm.conf" ] && rm -f /etc/slurm/slurm.conf || true
    ;;
esac
