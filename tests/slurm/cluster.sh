#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine, for tests/test_slurm.py.
#   cluster.sh start STATE_DIR   writes STATE_DIR/slurm.conf, starts munged (if needed),
#                                slurmctld and slurmd, and waits until the node is idle
#   cluster.sh stop STATE_DIR    stops the daemons this script started (by their pid files)
# The config must be /etc/slurm/slurm.conf: the Snakemake job step strips SLURM_* variables
# (SLURM_CONF too) before its srun. So the script links it there, refusing to replace a
# slurm.conf it did not write (a real cluster's), and "stop" removes the link again.
# Needs root (slurmd runs jobs as their user) and Debian's slurm-wlm and munge packages.
set -euo pipefail

action=${1:?usage: cluster.sh start|stop STATE_DIR}
state=$(realpath -m "${2:?usage: cluster.sh start|stop STATE_DIR}")
conf="$state/slurm.conf"
system_conf=/etc/slurm/slurm.conf

stop_pidfile() {
    local pidfile=$1
    [[ -s $pidfile ]] || return 0
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

if [[ $action == stop ]]; then
    # Jobs first, so slurmd does not leave job processes behind.
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    stop_pidfile "$state/slurmd.pid"
    stop_pidfile "$state/slurmctld.pid"
    stop_pidfile "$state/munged.pid"   # only present when this script started munged
    if [[ -L $system_conf && $(readlink "$system_conf") == "$conf" ]]; then rm -f "$system_conf"; fi
    if [[ -L /etc/slurm/gres.conf && $(readlink /etc/slurm/gres.conf) == "$state/gres.conf" ]]; then
        rm -f /etc/slurm/gres.conf
    fi
    exit 0
fi
[[ $action == start ]] || { echo "unknown action $action" >&2; exit 2; }

[[ $(id -u) == 0 ]] || { echo "SLURM test cluster needs root (slurmd runs jobs as their user)" >&2; exit 3; }
for binary in munged slurmctld slurmd sinfo sbatch squeue scancel; do
    command -v "$binary" >/dev/null || [[ -x /usr/sbin/$binary ]] \
        || { echo "$binary not found: apt-get install slurm-wlm munge" >&2; exit 3; }
done
PATH=$PATH:/usr/sbin

# A link left by an earlier run whose state folder is gone: ours, remove it.
for link in "$system_conf" /etc/slurm/gres.conf; do
    if [[ -L $link && ! -e $link ]]; then rm -f "$link"; fi
done
if [[ -e $system_conf ]] && ! grep -q "^ClusterName=snaketest$" "$system_conf"; then
    echo "$system_conf exists and is not a test cluster's: not replacing it" >&2
    exit 3
fi
mkdir -p "$state"/{spool,state,log} /etc/slurm
host=$(hostname -s)
cpus=$(nproc)
# Leave 1 GiB to the system; SLURM refuses a node whose RealMemory exceeds what it finds.
memory_mb=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))

cat > "$conf" <<CONF
ClusterName=snaketest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/state
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
# No cgroups in a container: track job processes by parent pid.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# No accounting database: finished jobs are only known to squeue for MinJobAge seconds,
# which is how long Snakemake's executor (--slurm-status-command squeue) can still see them.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=900
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MessageTimeout=20
# One fake "gpu" GRES (File=/dev/null), so that GPU requests (sbatch --gpus=1) can be
# scheduled and checked on a machine without one; the jobs then run on the CPU.
GresTypes=gpu
NodeName=$host CPUs=$cpus RealMemory=$memory_mb Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

echo "NodeName=$host Name=gpu File=/dev/null Count=1" > "$state/gres.conf"
ln -sfn "$conf" "$system_conf"
# slurmd reads gres.conf beside slurm.conf; link it only when no real one is there.
[[ -e /etc/slurm/gres.conf ]] || ln -sfn "$state/gres.conf" /etc/slurm/gres.conf

# munged: reuse a working one (the package's service), else start our own.
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- munged
    # munged writes its pid file as the munge user; keep a copy so "stop" ends only this one.
    for _ in $(seq 50); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$state/munged.pid"
fi

slurmctld
slurmd
for _ in $(seq 60); do
    node_state=$(sinfo --noheader --nodes="$host" --format=%t 2>/dev/null || true)
    if [[ $node_state == idle* ]]; then
        echo "SLURM cluster up: node $host idle, config $system_conf -> $conf"
        exit 0
    fi
    sleep 1
done
echo "node $host not idle after 60 s (state: ${node_state:-none}); logs in $state/log" >&2
tail -n 20 "$state"/log/*.log >&2 || true
exit 1
