#!/usr/bin/env bash
# A local Slurm from Debian's packages: munged, slurmctld and slurmd, configured and run from a
# state folder of their own.
#
#   cluster/slurm-up.sh                  # one node: this machine, its CPUs and memory
#   sbatch --wait --nodes=1 --ntasks-per-node=2 launch/slurm.sbatch train charlm --steps 200 --json
#   cluster/slurm-down.sh
#
#   cluster/up.sh 2 && cluster/slurm-up.sh --nodes 2   # a slurmd in each simulated node (node1, node2)
#
# Everything goes in $SLURM_STATE (default cluster/.slurm): slurm.conf, the munge key, socket and
# seed, slurmctld's state, the slurmd spool folders, the logs and the pid files. The daemons run as
# root with these files only (munged --force: it refuses root otherwise). The clients (sbatch, srun,
# squeue, scontrol) read /etc/slurm/slurm.conf unless SLURM_CONF names another: if that file does not
# exist, slurm-up.sh makes it a symbolic link to its own slurm.conf (the one thing it writes outside
# the state folder; slurm-down.sh removes the link, and only a link to its own file); if a real
# one exists it is left alone and the script says to export SLURM_CONF.
#
# With --nodes N (needs cluster/up.sh N first), slurmctld listens on the bridge (198.18.0.254) and
# each node's slurmd runs inside its network namespace with the node's host name, so `sbatch
# --nodes=2` spans two simulated nodes; each declares this machine's CPUs (the nodes share them).
# Running it again with the same layout leaves the running daemons as they are; with another one
# it restarts them. Knobs: SLURM_STATE, SLURMCTLD_PORT (6817), SLURMD_PORT (6818). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/common.sh
source cluster/slurm-common.sh

usage() { echo "usage: cluster/slurm-up.sh [--nodes N]   (N simulated nodes of cluster/up.sh; default: this machine alone)" >&2; exit 1; }
nodes=0
while (($#)); do
    case $1 in
        --nodes) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage; nodes=$2; shift 2 ;;
        --nodes=*) nodes=${1#--nodes=}; [[ $nodes =~ ^[1-9][0-9]*$ ]] || usage; shift ;;
        *) usage ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "error: the local Slurm runs its daemons as root; run as root or with sudo" >&2; exit 1; }
replica_apt_install "${REPLICA_SLURM_APT_PACKAGES[@]}"
if ((nodes > 0)); then
    source cluster/common.sh
    [[ -f $CLUSTER_STATE/nodes ]] && (($(cat "$CLUSTER_STATE/nodes") >= nodes)) \
        || { echo "error: --nodes $nodes needs the simulated cluster of cluster/up.sh $nodes (none that large is up)" >&2; exit 1; }
fi

mkdir -p "$SLURM_STATE"/{munge,run,ctld,spool,log}
chmod 700 "$SLURM_STATE/munge"
chmod 755 "$SLURM_STATE" "$SLURM_STATE/run"

# --- The configuration: this machine (or each simulated node) as slurmd -C describes it ---
hardware=$(slurmd -C | head -n 1 | sed -E 's/^NodeName=[^ ]+ //; s/ ?UpTime=.*//')
memory=$(sed -nE 's/.*RealMemory=([0-9]+).*/\1/p' <<<"$hardware")
hardware=$(sed -E "s/RealMemory=[0-9]+/RealMemory=$((memory * 9 / 10))/" <<<"$hardware")   # leave the system some
if ((nodes > 0)); then
    controller="$(hostname)($CLUSTER_PREFIX.254)"
    node_lines="NodeName=node[1-$nodes] NodeAddr=$CLUSTER_PREFIX.[1-$nodes] $hardware State=UNKNOWN"
else
    controller="$(hostname)(127.0.0.1)"
    node_lines="NodeName=$(hostname) NodeAddr=127.0.0.1 $hardware State=UNKNOWN"
fi
conf=$SLURM_STATE/slurm.conf
new_conf=$(cat <<CONF
# Made by replica cluster/slurm-up.sh: a local Slurm whose files all live in $SLURM_STATE.
ClusterName=replica
SlurmctldHost=$controller
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
# cred_expire (Slurm's default 120 s) is also how long a requeued job waits before it may start
# again: 30 s keeps a preempted test job's requeue short.
AuthInfo=socket=$SLURM_STATE/run/munge.socket,cred_expire=30
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$SLURM_STATE/ctld
SlurmdSpoolDir=$SLURM_STATE/spool/%n
# Each node's temporary folder (the PMIx plugin's files are there): simulated nodes share /tmp.
TmpFS=$SLURM_STATE/tmp/%n
SlurmctldPidFile=$SLURM_STATE/run/slurmctld.pid
SlurmdPidFile=$SLURM_STATE/run/slurmd-%n.pid
SlurmctldLogFile=$SLURM_STATE/log/slurmctld.log
SlurmdLogFile=$SLURM_STATE/log/slurmd-%n.log
# No cgroups in a container: processes tracked by parentage, cores bound by sched_setaffinity.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
SlurmdTimeout=60
InactiveLimit=0
KillWait=30
$node_lines
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
)
# A new layout (or a first start): the old daemons go, the new ones read the new file.
if [[ ! -f $conf ]] || [[ $(cat "$conf") != "$new_conf" ]]; then
    slurm_stop_daemons
    echo "$new_conf" >"$conf"
fi

# --- The clients' default configuration path ---
if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$conf" ]]; then
    :
elif [[ -e /etc/slurm/slurm.conf || -L /etc/slurm/slurm.conf ]]; then
    echo "note: /etc/slurm/slurm.conf is another Slurm's and is left alone; export SLURM_CONF=$conf to use this one" >&2
else
    mkdir -p /etc/slurm
    ln -s "$conf" /etc/slurm/slurm.conf
fi
export SLURM_CONF=$conf

# --- munged ---
[[ -s $SLURM_STATE/munge/munge.key ]] || { mungekey --create --keyfile="$SLURM_STATE/munge/munge.key"; chmod 400 "$SLURM_STATE/munge/munge.key"; }
if ! slurm_alive "$SLURM_STATE/run/munged.pid"; then
    munged --force --key-file="$SLURM_STATE/munge/munge.key" --socket="$SLURM_STATE/run/munge.socket" \
        --pid-file="$SLURM_STATE/run/munged.pid" --seed-file="$SLURM_STATE/munge/munged.seed" \
        --log-file="$SLURM_STATE/log/munged.log"
fi

# --- slurmctld, then a slurmd for each node ---
slurm_alive "$SLURM_STATE/run/slurmctld.pid" || slurmctld -f "$conf"
if ((nodes > 0)); then
    for ((k = 1; k <= nodes; k++)); do
        slurm_alive "$SLURM_STATE/run/slurmd-node$k.pid" && continue
        mkdir -p "$SLURM_STATE/spool/node$k" "$SLURM_STATE/tmp/node$k"
        # The node's network namespace, host name and /etc/hosts (its own mount namespace), but
        # this machine's /sys: `ip netns exec` would mount a sysfs without /sys/fs/cgroup, which
        # slurmd needs.
        nsenter --net="/run/netns/node$k" unshare --uts --mount --propagation private sh -c \
            'mount --bind "/etc/netns/$1/hosts" /etc/hosts && hostname "$1" && exec slurmd -f "$2" -N "$1"' slurmd "node$k" "$conf"
    done
else
    mkdir -p "$SLURM_STATE/spool/$(hostname)" "$SLURM_STATE/tmp/$(hostname)"
    slurm_alive "$SLURM_STATE/run/slurmd-$(hostname).pid" || slurmd -f "$conf"
fi

# --- Ready when every node is idle ---
expected=$((nodes > 0 ? nodes : 1))
for ((i = 0; i < 300; i++)); do
    idle=$(sinfo --noheader --responding --states=idle,mixed,allocated -o '%D' 2>/dev/null | awk '{ n += $1 } END { print n + 0 }')
    ((idle >= expected)) && break
    sleep 0.1
done
if ((idle < expected)); then
    sinfo >&2 || true
    tail -n 20 "$SLURM_STATE"/log/*.log >&2 || true
    echo "error: only $idle of $expected Slurm node(s) came up within 30 s (logs in $SLURM_STATE/log)" >&2
    exit 1
fi
sinfo
echo "slurm: $expected node(s) up; state and logs in $SLURM_STATE; clients read $(
    [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$conf" ]] && echo /etc/slurm/slurm.conf || echo "SLURM_CONF=$conf")"
