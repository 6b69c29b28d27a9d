#!/usr/bin/env bash
# multinode.sh R1 SRC - a job across two "nodes": two Linux network namespaces joined by a
# bridge, each with its own address, and mpirun starting one OpenMPI daemon in each
# through an rsh agent (`ip netns exec` in place of ssh).  The ranks of
# different nodes talk over TCP on the veth links (not shared memory), the local rank is
# counted per node, and the run directory is on the filesystem both see, as on a cluster.
#  1. tests/recipes/dist/lm.yaml on 2 nodes x 1 rank gives the bytes of the same job on one
#     machine (2 ranks over shared memory), with the overlapped gradient sums crossing the
#     network in 0.01 MiB buckets;
#  2. 2 nodes x 2 ranks: the bytes of 4 ranks on one machine;
#  3. the rank on the second node killed mid-SFT ends the job naming it, and a resume across
#     the two nodes ends bit-identical.
# Exits 77 without mpirun, an MPI build, or the right to make network namespaces (root).
set -u
r1=$(realpath "$1")
src=$(realpath "$2")
recipe=$src/tests/recipes/dist/lm.yaml
skip() { echo "multinode.sh: skipped: $*" >&2; exit 77; }
command -v mpirun >/dev/null || skip "mpirun not found (tools/setup installs OpenMPI)"
"$r1" --version | grep -q "MPI: no" && skip "this r1 was built without MPI"
command -v ip >/dev/null || skip "ip (iproute2) not found"
id=$$
net=10.$((200 + id % 50)).$((id / 50 % 250)).0 # a /24 of its own
ns1=r1n1-$id ns2=r1n2-$id br=r1b$((id % 100000))
tmp=$(mktemp -d)
cleanup() {
  for ns in "$ns1" "$ns2"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null; done
  ip netns del "$ns1" 2>/dev/null; ip netns del "$ns2" 2>/dev/null
  ip link del "$br" 2>/dev/null; rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' TERM INT # meson's timeout: the EXIT trap still removes the namespaces
ip netns add "$ns1" 2>/dev/null || skip "cannot create network namespaces (needs root and CAP_SYS_ADMIN)"
ip netns add "$ns2" &&
  ip link add "$br" type bridge && ip addr add "${net%.0}.1/24" dev "$br" && ip link set "$br" up ||
  skip "cannot set up the bridge"
for i in 1 2; do
  ns=$([ $i = 1 ] && echo "$ns1" || echo "$ns2")
  ip link add "${br}v$i" type veth peer name eth0 netns "$ns" &&
    ip link set "${br}v$i" master "$br" up &&
    ip netns exec "$ns" ip addr add "${net%.0}.1$i/24" dev eth0 &&
    ip netns exec "$ns" ip link set eth0 up && ip netns exec "$ns" ip link set lo up ||
    skip "cannot set up the veth links"
done
h1=${net%.0}.11 h2=${net%.0}.12
# the rsh agent: "agent HOST COMMAND..." runs COMMAND in HOST's namespace
cat >"$tmp/agent" <<EOF
#!/bin/sh
host=\$1; shift
case \$host in $h1) ns=$ns1 ;; $h2) ns=$ns2 ;; *) echo "agent: unknown host \$host" >&2; exit 1 ;; esac
# a node's own /tmp for OpenMPI's session directories: both "nodes" have one hostname, and
# in a shared /tmp their daemons raced to make the same directory (one failed at times)
export OMPI_MCA_orte_tmpdir_base=$tmp/\$ns
mkdir -p "\$OMPI_MCA_orte_tmpdir_base"
exec ip netns exec "\$ns" sh -c "\$*"
EOF
chmod +x "$tmp/agent"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
cluster() { # SLOTS-PER-NODE ARGS...: mpirun over the two namespaces (R1_MN_TIMEOUT s)
  local n=$1 x=(); shift
  [ -n "${R1_TEST_CRASH:-}" ] && x=(-x R1_TEST_CRASH -x R1_TEST_CRASH_RANK)
  timeout -k 5 "${R1_MN_TIMEOUT:-300}" mpirun -np $((2 * n)) --host "$h1:$n,$h2:$n" --mca plm_rsh_agent "$tmp/agent" \
    --mca oob_tcp_if_include "$net/24" --mca btl_tcp_if_include "$net/24" --mca btl self,tcp \
    --mca routed direct --mca plm_rsh_no_tree_spawn 1 \
    -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM "${x[@]}" -wdir "$tmp" "$@"
}
# the links take a moment to forward: wait until a job of `true` starts on both nodes
for i in $(seq 6); do
  R1_MN_TIMEOUT=10 cluster 1 true >"$tmp/probe.log" 2>&1 && break
  [ "$i" = 6 ] && skip "the namespaces' network did not come up: $(grep -m1 -i 'unable\|cannot\|inability' "$tmp/probe.log")"
  sleep 0.5
done
local_job() { timeout 300 mpirun -np "$1" --oversubscribe "${@:2}"; }
final=checkpoints/sft/00000012/model.safetensors
bset=(--set stages.pretrain.optimizer.grad_bucket_mb=0.01 --set stages.sft.optimizer.grad_bucket_mb=0.01)
fail=0

# 1. two nodes, one rank each
local_job 2 "$r1" run "$recipe" --run-dir "$tmp/one2" --threads 1 -q >"$tmp/one2.log" 2>&1 ||
  { echo "FAIL: the one-machine 2-rank run: $(tail -3 "$tmp/one2.log")"; exit 1; }
if cluster 1 "$r1" run "$recipe" --run-dir "$tmp/mn2" --threads 1 -q "${bset[@]}" \
     >"$tmp/mn2.log" 2>&1 && cmp -s "$tmp/one2/$final" "$tmp/mn2/$final"; then
  echo "ok: 2 nodes x 1 rank over TCP give the bytes of 2 ranks on one machine"
else
  echo "FAIL: 2 nodes x 1 rank: $(tail -5 "$tmp/mn2.log")"; fail=1
fi

# 2. two nodes, two ranks each
local_job 4 "$r1" run "$recipe" --run-dir "$tmp/one4" --threads 1 -q >"$tmp/one4.log" 2>&1 ||
  { echo "FAIL: the one-machine 4-rank run: $(tail -3 "$tmp/one4.log")"; fail=1; }
if cluster 2 "$r1" run "$recipe" --run-dir "$tmp/mn4" --threads 1 -q >"$tmp/mn4.log" 2>&1 &&
   cmp -s "$tmp/one4/$final" "$tmp/mn4/$final"; then
  echo "ok: 2 nodes x 2 ranks give the bytes of 4 ranks on one machine"
else
  echo "FAIL: 2 nodes x 2 ranks: $(tail -5 "$tmp/mn4.log")"; fail=1
fi

# 3. the second node's rank dies; the resume crosses the nodes again
R1_TEST_CRASH=sft:3:step R1_TEST_CRASH_RANK=1 cluster 1 "$r1" run "$recipe" \
  --run-dir "$tmp/kill" --threads 1 -q "${bset[@]}" >"$tmp/kill.log" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && grep -q "rank 1" "$tmp/kill.log"; then
  echo "ok: killing the rank on node 2 ends the job (status $rc) naming rank 1"
else
  echo "FAIL: killed rank 1: status $rc, log: $(tail -5 "$tmp/kill.log")"; fail=1
fi
if cluster 1 "$r1" resume "$tmp/kill" --threads 1 -q >"$tmp/resume.log" 2>&1 &&
   cmp -s "$tmp/one2/$final" "$tmp/kill/$final"; then
  echo "ok: the resume across the two nodes ends bit-identical"
else
  echo "FAIL: resume across the nodes: $(tail -5 "$tmp/resume.log")"; fail=1
fi
exit $fail
