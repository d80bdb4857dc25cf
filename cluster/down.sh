#!/usr/bin/env bash
# Removes the simulated cluster that cluster/up.sh made: namespaces, veth links, the bridge,
# /etc/netns/nodeK, and the state folder. Safe to run any number of times, and after a crash:
# it removes what the state file lists and then anything else that carries up.sh's names
# (the rc-br0 bridge, rc-nodeK links, nodeK namespaces whose /etc/netns hosts file up.sh wrote).
#
#   cluster/down.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source cluster/common.sh
[[ $(id -u) -eq 0 ]] || { echo "error: cluster/down.sh needs root, as up.sh did" >&2; exit 1; }

removed=0
if [[ -f $CLUSTER_STATE/made ]]; then
    while read -r kind name; do
        case $kind in
            netns) cluster_remove_node "$name"; removed=$((removed + 1)) ;;
            link) ip link del "$name" 2>/dev/null || true ;;
            etc) [[ -f $name/hosts && $(head -n 1 "$name/hosts") == "$CLUSTER_MARKER" ]] && rm -rf "$name" || true ;;
        esac
    done < <(cat "$CLUSTER_STATE/made")
fi

# What a crash before the state file was written may have left.
for link in /sys/class/net/rc-node*; do
    [[ -e $link ]] && ip link del "$(basename "$link")" 2>/dev/null || true
done
ip link del "$CLUSTER_BRIDGE" 2>/dev/null || true
for hosts in /etc/netns/node*/hosts; do
    [[ -f $hosts && $(head -n 1 "$hosts") == "$CLUSTER_MARKER" ]] || continue
    node=$(basename "$(dirname "$hosts")")
    ip netns list | grep -qE "^$node( |$)" && removed=$((removed + 1))
    cluster_remove_node "$node"
done

grep -qx "etcdir /etc/netns" "$CLUSTER_STATE/made" 2>/dev/null && rmdir /etc/netns 2>/dev/null || true
rm -f "$CLUSTER_STATE"/{made,hostfile,rsh-agent,nodes,rate}
rmdir "$CLUSTER_STATE" 2>/dev/null || true
echo "cluster: removed ($removed node(s) were up)"
