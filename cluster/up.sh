#!/usr/bin/env bash
# Simulates an N-node cluster on this machine: network namespaces node1..nodeN on a bridge.
#
#   cluster/up.sh 2                 # node1, node2 at 198.18.0.1, 198.18.0.2
#   cluster/up.sh 2 --rate 1gbit    # the same, each node's link shaped to 1 Gbit/s each way (tc tbf)
#   cluster/run.sh -np 4 replica train gat --json
#   cluster/down.sh
#
# Each node is a network namespace with loopback up and one veth link ("eth0" inside, "rc-nodeK"
# outside) enslaved to the bridge "rc-br0" in the root namespace, which holds 198.18.0.254 so that
# mpirun can run from here. Addresses are only in 198.18.0.0/24 (part of the 198.18.0.0/15
# benchmarking range). Open MPI reaches a node through the rsh agent written here, which enters
# the node's namespace and a UTS namespace with the node's hostname. Written to $CLUSTER_STATE
# (default cluster/.state): hostfile, rsh-agent, and "made" (what exists, for down.sh).
# Running it again with the same N only repairs what is missing; with another N or rate it adjusts.
# Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) and iproute2.
set -euo pipefail
cd "$(dirname "$0")/.."
source cluster/common.sh

usage() { echo "usage: cluster/up.sh N [--rate RATE]   (N from 1 to 253; RATE as tc writes it: 100mbit, 1gbit, 10gbit)" >&2; exit 1; }
[[ $# -ge 1 && $1 =~ ^[1-9][0-9]*$ && $1 -le 253 ]] || usage
nodes=$1
shift
rate=""
while (($#)); do
    case $1 in
        --rate) [[ $# -ge 2 ]] || usage; rate=$2; shift 2 ;;
        --rate=*) rate=${1#--rate=}; shift ;;
        *) usage ;;
    esac
done
cluster_require_tools

# Burst of the token bucket: 2 ms at the rate, at least 128 KiB (a TSO/GSO super-packet on a
# veth is up to 64 KiB and must fit in the bucket, or tbf drops it).
burst_bytes() {
    local bits
    bits=$(cluster_rate_bits "$1") || { echo "error: --rate $1: use a tc rate such as 100mbit, 1gbit, 10gbit" >&2; exit 1; }
    local burst=$((bits / 8 / 500))
    ((burst < 131072)) && burst=131072
    echo "$burst"
}
[[ -z $rate ]] || burst=$(burst_bytes "$rate")

mkdir -p "$CLUSTER_STATE"
made="$CLUSTER_STATE/made"
touch "$made"
# Records an object before it is created, so that down.sh finds it even after a crash midway.
record() { grep -qxF "$1" "$made" || echo "$1" >>"$made"; }

# Nodes beyond N from an earlier, larger cluster go first.
while read -r kind name; do
    if [[ $kind == netns && $name =~ ^node([0-9]+)$ ]] && ((BASH_REMATCH[1] > nodes)); then
        cluster_remove_node "$name"
    fi
done < <(cat "$made")

# /etc/netns itself, if this is the first to need it.
[[ -d /etc/netns ]] || { record "etcdir /etc/netns"; mkdir -p /etc/netns; }

# The bridge, with the root namespace's own address on it.
record "link $CLUSTER_BRIDGE"
ip link show "$CLUSTER_BRIDGE" >/dev/null 2>&1 || ip link add "$CLUSTER_BRIDGE" type bridge
ip addr replace "$CLUSTER_PREFIX.254/24" dev "$CLUSTER_BRIDGE"
ip link set "$CLUSTER_BRIDGE" up

for ((k = 1; k <= nodes; k++)); do
    node=node$k outside=rc-node$k address=$CLUSTER_PREFIX.$k
    record "netns $node"
    record "link $outside"
    record "etc /etc/netns/$node"
    # /etc/netns/<ns>/* is bind-mounted over /etc/* by "ip netns exec": the node's own names.
    mkdir -p "/etc/netns/$node"
    {
        echo "$CLUSTER_MARKER"
        echo "127.0.0.1 localhost"
        echo "$CLUSTER_PREFIX.254 cluster-root"
        for ((j = 1; j <= nodes; j++)); do echo "$CLUSTER_PREFIX.$j node$j"; done
    } >"/etc/netns/$node/hosts"
    echo "$node" >"/etc/netns/$node/hostname"
    ip netns list | grep -qE "^$node( |$)" || ip netns add "$node"
    ip -n "$node" link set lo up
    if ! ip link show "$outside" >/dev/null 2>&1; then
        # A half-made node (crash between these steps) leaves an eth0 without its peer: start clean.
        ip -n "$node" link del eth0 2>/dev/null || true
        ip link add "$outside" type veth peer name eth0 netns "$node"
    fi
    ip link set "$outside" master "$CLUSTER_BRIDGE" up
    ip -n "$node" addr replace "$address/24" dev eth0
    ip -n "$node" link set eth0 up
    # Shaping: tbf on both ends' egress limits each direction of the node's link to the rate.
    if [[ -n $rate ]]; then
        tc qdisc replace dev "$outside" root tbf rate "$rate" burst "$burst" latency 100ms
        tc -n "$node" qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 100ms
    else
        tc qdisc del dev "$outside" root 2>/dev/null || true
        tc -n "$node" qdisc del dev eth0 root 2>/dev/null || true
    fi
done

# Open MPI's hostfile: 2 slots a node (this machine has few cores; run.sh oversubscribes anyway).
{
    for ((k = 1; k <= nodes; k++)); do echo "node$k slots=${SLOTS:-2}"; done
} >"$CLUSTER_STATE/hostfile"
echo "$nodes" >"$CLUSTER_STATE/nodes"
echo "${rate:-unshaped}" >"$CLUSTER_STATE/rate"

# The rsh agent: mpirun calls it as "agent [ssh options] HOST COMMAND..."; like ssh, it joins the
# words of COMMAND and runs them with sh, here inside HOST's network namespace and a fresh UTS
# namespace named HOST.
cat >"$CLUSTER_STATE/rsh-agent" <<'AGENT'
#!/usr/bin/env bash
# rsh agent for Open MPI (plm_rsh_agent): runs a command "on" a simulated node.
#   rsh-agent [-x] [-o OPTION] ... nodeK COMMAND...
set -euo pipefail
while [[ $# -gt 0 && $1 == -* ]]; do
    case $1 in
        -o | -l | -p | -i | -F) shift 2 ;;   # ssh options with a value: ignored
        *) shift ;;                          # ssh flags (-x, -T, -q, ...): ignored
    esac
done
[[ $# -ge 2 ]] || { echo "rsh-agent: usage: rsh-agent [options] HOST COMMAND..." >&2; exit 255; }
host=$1
shift
[[ $host =~ ^node[0-9]+$ ]] && ip netns list | grep -qE "^$host( |$)" \
    || { echo "rsh-agent: $host is not a node of the simulated cluster (cluster/up.sh)" >&2; exit 255; }
exec ip netns exec "$host" unshare --uts sh -c 'hostname "$1" && exec sh -c "$2"' rsh-agent "$host" "$*"
AGENT
chmod +x "$CLUSTER_STATE/rsh-agent"

echo "cluster: $nodes node(s) node1..node$nodes at $CLUSTER_PREFIX.1-$nodes on $CLUSTER_BRIDGE, link rate ${rate:-unshaped}"
echo "hostfile: $CLUSTER_STATE/hostfile; agent: $CLUSTER_STATE/rsh-agent"
