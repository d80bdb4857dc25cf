# Shared by the cluster/ scripts: names, addresses, and removing what up.sh made.
# Source it; do not run it.

# Where up.sh writes the hostfile, the rsh agent and the list of what it made.
CLUSTER_STATE=${CLUSTER_STATE:-$PWD/cluster/.state}
CLUSTER_BRIDGE=rc-br0
# Nodes are $CLUSTER_PREFIX.1..N, the root namespace .254: inside 198.18.0.0/15 only.
CLUSTER_PREFIX=198.18.0
CLUSTER_SUBNET=198.18.0.0/24
# The first line of /etc/netns/nodeK/hosts: the folder is ours to remove.
CLUSTER_MARKER="# made by replica cluster/up.sh"

cluster_require_tools() {
    [[ $(id -u) -eq 0 ]] || { echo "error: the simulated cluster needs root (network namespaces); run as root or with sudo" >&2; exit 1; }
    # A fresh Debian machine may lack iproute2: install it, as launch/common.sh does the rest.
    if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
        command -v apt-get >/dev/null && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }
    fi
    local tool
    for tool in ip tc unshare; do
        command -v "$tool" >/dev/null || { echo "error: $tool not found; apt-get install iproute2 util-linux" >&2; exit 1; }
    done
}

# A tc rate (100mbit, 1gbit, 10gbit, 12500kbps, 1000000bit) in bits per second.
cluster_rate_bits() {
    [[ $1 =~ ^([0-9]+)([a-zA-Z]*)$ ]] || return 1
    local value=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2],,}
    case $unit in
        bit | "") echo "$value" ;;
        kbit) echo $((value * 1000)) ;;
        mbit) echo $((value * 1000000)) ;;
        gbit) echo $((value * 1000000000)) ;;
        bps) echo $((value * 8)) ;;
        kbps) echo $((value * 8000)) ;;
        mbps) echo $((value * 8000000)) ;;
        gbps) echo $((value * 8000000000)) ;;
        *) return 1 ;;
    esac
}

# Removes node NAME: its namespace (which takes its veth pair along), its outside link, its /etc files.
cluster_remove_node() {
    local node=$1
    local k=${node#node}
    ip link del "rc-node$k" 2>/dev/null || true
    ip netns del "$node" 2>/dev/null || true
    if [[ -f /etc/netns/$node/hosts ]] && [[ $(head -n 1 "/etc/netns/$node/hosts") == "$CLUSTER_MARKER" ]]; then
        rm -rf "/etc/netns/$node"
    fi
    [[ -f $CLUSTER_STATE/made ]] && sed -i -e "/^netns $node\$/d" -e "/^link rc-node$k\$/d" -e "\#^etc /etc/netns/$node\$#d" "$CLUSTER_STATE/made"
    return 0
}

# Bytes that crossed the nodes' links so far: "rx tx" summed over every rc-nodeK in the root namespace.
cluster_link_bytes() {
    local rx=0 tx=0 link
    for link in /sys/class/net/rc-node*; do
        [[ -e $link ]] || continue
        rx=$((rx + $(<"$link/statistics/rx_bytes")))
        tx=$((tx + $(<"$link/statistics/tx_bytes")))
    done
    echo "$rx $tx"
}
