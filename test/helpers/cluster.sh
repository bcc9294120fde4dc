#!/usr/bin/env bash
# A throwaway "cluster" of two real hosts on this machine, for tests that need ssh and Slurm:
#
#   cluster.sh up DIR     build it (first clearing what a crashed earlier run left behind)
#   cluster.sh down DIR   tear it down; safe to repeat, and after a failed or partial `up`
#
# Each host is a network namespace (ivt-h1, ivt-h2) on a bridge (ivtbr0) in the root namespace,
# with its own hostname (a UTS namespace per daemon), a real sshd and a real slurmd. slurmctld
# and munged run in the root namespace; slurmctld listens on the bridge address. Keys, configs,
# logs, pid files and Slurm state all live in DIR; `up` writes DIR/info.json for the tests.
# Outside DIR only these change: the namespaces and links (all named ivt*), each host's
# /etc/netns/ivt-hN/hosts, and /run/sshd, which sshd insists on (made if missing, and left:
# it is the empty directory Debian's own sshd service makes). The root namespace's /etc/hosts
# is not touched.
#
# Needs root, iproute2, util-linux (unshare, setsid), openssh-server/-client, munge and Slurm
# (Debian's slurm-wlm 22.05); .ci/cluster-deps installs them.
set -euo pipefail

NET=${IVT_NET:-10.213.7}          # a /24 not otherwise used on the machine; checked in `up`
BRIDGE=ivtbr0
BRIDGE_ADDR=$NET.1
HOSTS=(ivt-h1 ivt-h2)
CTL_NAME=ivt-ctl                  # slurmctld's hostname, so it does not depend on the machine's
CPUS=4                            # per host: more than the machine has, so -N2 -n8 fits
# Not Slurm's default ports, so a real Slurm on the machine is left alone (slurmd's port is in
# the hosts' own network stacks, so only slurmctld's can clash, but keep both distinct).
CTLD_PORT=${IVT_SLURMCTLD_PORT:-6917}
SLURMD_PORT=${IVT_SLURMD_PORT:-6918}
# Every daemon we start carries this in its environment, so a later `up` can find the root
# namespace ones (slurmctld, munged) even when the DIR of the crashed run is unknown.
MARK=IVT_CLUSTER_DIR
CLIENT_MARK=IVT_CLUSTER_CLIENT
MADE=.made-by-ivt-cluster

die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { [ -n "${IVT_QUIET:-}" ] || echo "cluster.sh: $*" >&2; }

host_addr() { # ivt-hN -> NET.(10+N)
  echo "$NET.$((10 + ${1#ivt-h}))"
}

# --- teardown -------------------------------------------------------------------------------

# Dead or a zombie (pid 1 here may be slow to reap what it inherits).
gone() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
  [ "$st" = Z ]
}

# Waits up to $1 tenths of a second for the other arguments (pids) to be gone; leaves the
# survivors in ALIVE.
wait_gone() {
  local tenths=$1 p i; shift
  ALIVE=("$@")
  for ((i = 0; i <= tenths; i++)); do
    local still=()
    for p in "${ALIVE[@]}"; do gone "$p" || still+=("$p"); done
    ALIVE=("${still[@]}")
    [ ${#ALIVE[@]} -gt 0 ] || return 0
    [ $i -eq "$tenths" ] || sleep 0.1
  done
  return 1
}

# stop_pids GRACE PID...: TERM and up to GRACE tenths of a second to exit (none if 0), then
# KILL. Returns only when all are gone: a process left in a namespace keeps the namespace, and
# so its veth, alive.
stop_pids() {
  local grace=$1 pids=() p; shift
  for p in "$@"; do [[ $p =~ ^[0-9]+$ ]] && [ "$p" != $$ ] && ! gone "$p" && pids+=("$p"); done
  [ ${#pids[@]} -gt 0 ] || return 0
  if [ "$grace" -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait_gone "$grace" "${pids[@]}" && return 0
    pids=("${ALIVE[@]}")
  fi
  kill -KILL "${pids[@]}" 2>/dev/null || true
  wait_gone 50 "${pids[@]}" && return 0
  echo "cluster.sh: processes would not die: ${ALIVE[*]}" >&2
  return 1
}

# Pids whose environment holds the variable $1 (kernel threads have no environment; pid 1's
# may be unreadable even to root).
marked_pids() {
  grep -l -z "^$1=" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | grep -vx $$ || true
}

# Slurm commands run with info.json's slurmEnv, which carries CLIENT_MARK. Only these commands:
# whatever else inherited the variable (the test runner, a command under salloc) is not ours.
slurm_clients() {
  local p
  for p in $(marked_pids "$CLIENT_MARK"); do
    case $(cat "/proc/$p/comm" 2>/dev/null) in srun | salloc | sattach | sbcast | sbatch) echo "$p" ;; esac
  done
}

ivt_netns() { ip netns list 2>/dev/null | awk '$1 ~ /^ivt-/ {print $1}'; }

# Everything named ivt*, whichever run made it: names are fixed, so only one cluster can exist.
cleanup_global() {
  local ns pids=() rc=0
  for ns in $(ivt_netns); do
    # All started by us: sshd, slurmd and their sessions, job steps and tasks. Nothing there
    # needs a clean exit, and slurmstepd ignores TERM, so KILL at once.
    pids+=($(ip netns pids "$ns" 2>/dev/null || true))
  done
  stop_pids 0 "${pids[@]}" || rc=1
  # slurmctld and munged, in the root namespace; TERM lets them close their logs.
  stop_pids 50 $(marked_pids "$MARK") || rc=1
  # Clients of a crashed run's cluster would wait forever for its slurmctld.
  stop_pids 0 $(slurm_clients) || rc=1
  for ns in $(ivt_netns); do ip netns del "$ns" || rc=1; done
  rm -rf /etc/netns/ivt-*
  # Directories `up` had to create carry a marker file, so even a crashed run's are removed.
  local d
  for d in /etc/netns; do
    if [ -e "$d/$MADE" ]; then rm -f "$d/$MADE" && rmdir "$d" 2>/dev/null || true; fi
  done
  local link
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep '^ivt' || true); do
    ip link del "$link" 2>/dev/null || true # a veth may have gone with its peer's namespace
  done
  return $rc
}

down() {
  local dir=$1 rc=0 f p pids=()
  # Clients still attached (a test that timed out): TERM while the cluster still runs lets
  # srun cancel its step.
  stop_pids 20 $(slurm_clients) || rc=1
  cleanup_global || rc=1
  # The recorded daemons are gone by now unless one lost its marker; make sure, but only if
  # the pid still names that daemon (it could have been reused).
  pids=()
  for f in "$dir"/pids/*; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$(basename "${f%-h[0-9]}")" ] && pids+=("$p")
  done
  stop_pids 0 "${pids[@]}" || rc=1
  rm -f "$dir"/pids/*
  if ip -o link show 2>/dev/null | grep -q ': ivt' || [ -n "$(ivt_netns)" ] || compgen -G '/etc/netns/ivt-*' >/dev/null; then
    echo "cluster.sh: leftovers after down:" >&2
    ip -o link show | grep ': ivt' >&2 || true
    ivt_netns >&2
    ls -d /etc/netns/ivt-* >&2 2>/dev/null || true
    rc=1
  fi
  return $rc
}

# --- bring-up -------------------------------------------------------------------------------

# Start a daemon in the background, detached from the caller's session and stdio (a test
# runner waiting on our pipes must not wait for the daemons), and record its pid. The command
# chain (setsid, ip netns exec, unshare, sh -c exec) execs in place, so $! is the daemon.
start() {
  local name=$1; shift
  env "$MARK=$DIR" setsid "$@" </dev/null >>"$DIR/logs/$name.out" 2>&1 &
  echo $! >"$DIR/pids/$name"
}

# Sets ON_HOST to a command prefix that runs in host $1's network namespace, under the host's
# name (a fresh UTS namespace per daemon, so `hostname` there says ivt-hN, and slurmd takes its
# node name from it: this Slurm is not built with multiple-slurmd support, so no `slurmd -N`).
on_host() {
  ON_HOST=(ip netns exec "$1" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$1")
}

make_dir() { # unless it exists; then marked for cleanup_global
  [ -d "$1" ] || { mkdir -p -m 0755 "$1" && touch "$1/$MADE"; }
}

# A daemon that exits while we wait for the cluster will not come back: say which and why now
# rather than after the timeout.
check_daemons() {
  local f
  for f in "$DIR"/pids/*; do
    [ -f "$f" ] || continue
    gone "$(cat "$f")" || continue
    die "$(basename "$f") exited at start: $(tail -5 "$DIR/logs/$(basename "$f").out" 2>/dev/null)"
  done
}

wait_for() { # SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    check_daemons
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

check_tools() {
  [ "$(id -u)" = 0 ] || die "must run as root (creates network namespaces)"
  local t missing=()
  for t in ip unshare setsid ssh ssh-keygen /usr/sbin/sshd munged slurmctld slurmd srun sinfo; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (run .ci/cluster-deps)"
}

check_subnet() {
  # Our own bridge from a crashed run is gone by now, so any hit is someone else's.
  if ip -o -4 addr show | awk '{print $4}' | grep -q "^${NET//./\\.}\."; then
    die "$NET.0/24 is already in use on this machine; set IVT_NET to a free 10.x.y"
  fi
  if ip -4 route show | grep -q "^${NET//./\\.}\."; then
    die "there is already a route into $NET.0/24; set IVT_NET to a free 10.x.y"
  fi
}

make_network() {
  ip link add "$BRIDGE" type bridge
  ip addr add "$BRIDGE_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local h n
  for h in "${HOSTS[@]}"; do
    n=${h#ivt-h}
    ip netns add "$h"
    ip link add "ivtv$n" type veth peer name eth0 netns "$h"
    ip link set "ivtv$n" master "$BRIDGE" up
    ip -n "$h" link set lo up
    ip -n "$h" addr add "$(host_addr "$h")/24" dev eth0
    ip -n "$h" link set eth0 up
    # No default route: a host reaches the bridge subnet and nothing else.
  done
  # Names resolve inside the hosts as on a real cluster: `ip netns exec` bind-mounts
  # /etc/netns/NAME/hosts over /etc/hosts for everything it starts (sshd, slurmd, and so
  # every session and task). The root namespace's /etc/hosts is left alone.
  make_dir /etc/netns
  for h in "${HOSTS[@]}"; do
    mkdir -p "/etc/netns/$h"
    {
      printf '# ivt test cluster (test/helpers/cluster.sh), removed by cluster.sh down\n'
      printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
      printf '%s\t%s\n' "$BRIDGE_ADDR" "$CTL_NAME"
      for n in "${HOSTS[@]}"; do printf '%s\t%s\n' "$(host_addr "$n")" "$n"; done
    } >"/etc/netns/$h/hosts"
  done
}

make_ssh() {
  mkdir -p "$DIR/ssh"
  ssh-keygen -q -t ed25519 -N '' -C ivt-client -f "$DIR/ssh/id_ed25519"
  cp "$DIR/ssh/id_ed25519.pub" "$DIR/ssh/authorized_keys"
  : >"$DIR/ssh/known_hosts"
  # sshd's privilege separation directory. Left in place by `down`: any other sshd started
  # meanwhile needs it too, and Debian's own sshd service makes the same empty directory.
  mkdir -p -m 0755 /run/sshd
  local h n a
  {
    for h in "${HOSTS[@]}"; do
      a=$(host_addr "$h")
      printf 'Host %s %s\n  HostName %s\n' "$h" "$a" "$a"
    done
    # -F replaces ~/.ssh/config and /etc/ssh/ssh_config, so this is all the client reads.
    # The host keys are ours and known in advance: no prompt, no trust-on-first-use.
    cat <<EOF
Host *
  User root
  IdentityFile $DIR/ssh/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $DIR/ssh/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  CheckHostIP no
  BatchMode yes
  LogLevel ERROR
  ConnectTimeout 5
EOF
  } >"$DIR/ssh_config"
  for h in "${HOSTS[@]}"; do
    n=${h#ivt-h}; a=$(host_addr "$h")
    ssh-keygen -q -t ed25519 -N '' -C "$h" -f "$DIR/ssh/host_key_h$n"
    echo "$h,$a $(cut -d' ' -f1,2 "$DIR/ssh/host_key_h$n.pub")" >>"$DIR/ssh/known_hosts"
    # StrictModes would reject AuthorizedKeysFile under a world-writable /tmp.
    cat >"$DIR/ssh/sshd_config_h$n" <<EOF
ListenAddress $a
Port 22
HostKey $DIR/ssh/host_key_h$n
PidFile $DIR/ssh/sshd-h$n.pid
AuthorizedKeysFile $DIR/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
Subsystem sftp internal-sftp
EOF
    on_host "$h"
    start "sshd-h$n" "${ON_HOST[@]}" /usr/sbin/sshd -D -f "$DIR/ssh/sshd_config_h$n" -E "$DIR/logs/sshd-h$n.log"
  done
}

make_munge() {
  mkdir -p -m 0755 "$DIR/munge" # munged wants the socket directory searchable by all
  dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  chmod 0400 "$DIR/munge/munge.key"
  # --force: DIR is typically a mode-0700 mktemp dir, so other users could not reach the socket,
  # and munged refuses to start then. Only root uses this cluster. Logs go to stderr (-F).
  start munged munged --foreground --force \
    --socket="$DIR/munge/munge.sock" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munge/munged.pid" \
    --seed-file="$DIR/munge/munged.seed"
}

make_slurm() {
  mkdir -p "$DIR/slurm/state"
  for h in "${HOSTS[@]}"; do mkdir -p "$DIR/slurm/spool-$h"; done
  : >"$DIR/slurm/plugstack.conf" # not the machine's /etc/slurm/plugstack.conf
  local h nodes=""
  for h in "${HOSTS[@]}"; do
    nodes+="NodeName=$h NodeAddr=$(host_addr "$h") CPUs=$CPUS State=UNKNOWN"$'\n'
  done
  # No systemd and no cgroups here: linuxproc tracking, no task plugin, no accounting.
  # config_overrides: trust CPUs= above rather than the 2 cores slurmd finds.
  # KillWait, MinJobAge: a cancelled or ended job frees its nodes for the next test quickly.
  cat >"$DIR/slurm.conf" <<EOF
ClusterName=ivt
SlurmctldHost=$CTL_NAME($BRIDGE_ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.sock
StateSaveLocation=$DIR/slurm/state
SlurmdSpoolDir=$DIR/slurm/spool-%n
SlurmctldPidFile=$DIR/slurm/slurmctld.pid
SlurmdPidFile=$DIR/slurm/slurmd-%n.pid
SlurmctldLogFile=$DIR/logs/slurmctld.log
SlurmdLogFile=$DIR/logs/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$DIR/slurm/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
KillWait=2
MinJobAge=5
$nodes
# Test files run two at a time: jobs share CPUs (up to 4 per CPU) rather than queue behind
# each other and time out.
PartitionName=ivt Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
  # slurmd 22.05 loads a cgroup plugin even when nothing uses cgroups, and `ip netns exec`
  # gives it a fresh /sys without /sys/fs/cgroup, where autodetection fails. v1 initialises
  # without touching the hierarchy; with linuxproc and task/none nothing creates cgroups.
  echo 'CgroupPlugin=cgroup/v1' >"$DIR/cgroup.conf"
  export SLURM_CONF=$DIR/slurm.conf
  # -i: ignore state from an earlier run (there is none; keeps it that way). Each daemon finds
  # its node name from its own hostname, set by its UTS namespace.
  start slurmctld unshare --uts sh -c 'hostname "$0" && exec "$@"' "$CTL_NAME" \
    slurmctld -D -i -f "$DIR/slurm.conf"
  for h in "${HOSTS[@]}"; do
    on_host "$h"
    start "slurmd-${h#ivt-}" "${ON_HOST[@]}" slurmd -D -f "$DIR/slurm.conf"
  done
}

both_idle() {
  local out
  out=$(SLURM_CONF=$DIR/slurm.conf sinfo -h -N -o '%N %t' 2>/dev/null) || return 1
  for h in "${HOSTS[@]}"; do grep -qx "$h idle" <<<"$out" || return 1; done
}

ssh_ready() { ssh -F "$DIR/ssh_config" "$1" true; }

write_info() {
  local h sep="" hosts=""
  for h in "${HOSTS[@]}"; do
    hosts+="$sep{\"name\":\"$h\",\"addr\":\"$(host_addr "$h")\"}"; sep=","
  done
  cat >"$DIR/info.json" <<EOF
{
  "dir": "$DIR",
  "hosts": [$hosts],
  "bridgeAddr": "$BRIDGE_ADDR",
  "cpusPerHost": $CPUS,
  "sshArgs": ["-F", "$DIR/ssh_config"],
  "slurmEnv": {"SLURM_CONF": "$DIR/slurm.conf", "$CLIENT_MARK": "$DIR"}
}
EOF
}

up() {
  local t0=${EPOCHREALTIME/./}
  check_tools
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd -P)
  [[ $DIR != *[[:space:]]* ]] || die "DIR must not contain white space (it goes into slurm.conf and sshd_config)"
  [ ! -e "$DIR/info.json" ] || die "$DIR holds a cluster already; use a fresh directory"
  cleanup_global # leftovers of a crashed run, if any
  check_subnet
  BUILDING=1 # from here on, a failure tears down what was built
  mkdir -p "$DIR/pids" "$DIR/logs"
  make_network
  make_munge
  make_ssh
  wait_for 10 munged test -S "$DIR/munge/munge.sock" || die "munged did not start: $(tail -3 "$DIR/logs/munged.out")"
  make_slurm
  local h
  for h in "${HOSTS[@]}"; do
    wait_for 10 "sshd on $h" ssh_ready "$h" ||
      die "ssh to $h failed: $(ssh -F "$DIR/ssh_config" "$h" true 2>&1 | tail -3); see $DIR/logs/sshd-h${h#ivt-h}.log"
  done
  wait_for 30 "nodes idle" both_idle ||
    die "Slurm nodes not idle after 30 s: $(SLURM_CONF=$DIR/slurm.conf sinfo -N 2>&1 | tr '\n' ' '); see $DIR/logs/slurm*.log"
  write_info
  log "up in $(((${EPOCHREALTIME/./} - t0) / 1000)) ms: $DIR"
}

cmd=${1:-}; DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || die "usage: cluster.sh up|down DIR"
case $cmd in
  up)
    BUILDING=
    trap 'rc=$?; if [ $rc -ne 0 ] && [ -n "$BUILDING" ]; then down "$DIR" >/dev/null 2>&1 || true; fi' EXIT
    up
    ;;
  down)
    [ "$(id -u)" = 0 ] || die "must run as root"
    down "$DIR"
    ;;
  *) die "usage: cluster.sh up|down DIR" ;;
esac
