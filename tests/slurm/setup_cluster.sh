#!/usr/bin/env bash
# Start a throwaway one-node Slurm cluster on localhost (Debian 12, as root).
#
#   tests/slurm/setup_cluster.sh            # install packages, start daemons
#   tests/slurm/teardown_cluster.sh         # stop them again (by PID)
#
# Installs Debian's slurm-wlm + munge if missing, generates a fresh munge key,
# writes slurm.conf/gres.conf from the templates next to this script into
# $SLURM_TEST_STATE (default /tmp/sltgeom-slurm) and symlinks them to
# /etc/slurm/ (the plugin's job step drops SLURM_* variables, so SLURM_CONF
# pointing elsewhere breaks every job step). Pre-existing files in /etc/slurm
# are moved aside and restored by teardown_cluster.sh.
#
# The PIDs of munged, slurmctld and slurmd are appended to $SLURM_TEST_STATE/pids
# (one "name pid" per line); teardown_cluster.sh kills exactly those.
#
# Environment:
#   SLURM_TEST_STATE      state/log dir (default /tmp/sltgeom-slurm); wiped first
#   SLURM_TEST_PARTITION  partition name (default debug)
#   SLURM_TEST_CTLD_PORT / SLURM_TEST_SLURMD_PORT  (default 6817 / 6818)
#   SLURM_TEST_NO_INSTALL=1  do not apt-get install (fail if missing)
set -euo pipefail
# Slurm and munge daemons live in sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${SLURM_TEST_STATE:-/tmp/sltgeom-slurm}"
PARTITION="${SLURM_TEST_PARTITION:-debug}"
CTLD_PORT="${SLURM_TEST_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_TEST_SLURMD_PORT:-6818}"

log() { printf '[setup_cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# On failure, stop whatever this script already started.
trap 'rc=$?; if ((rc)); then "$HERE/teardown_cluster.sh"; fi' EXIT

[[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, writes /etc/slurm)"

# ---------------------------------------------------------------- packages --
PKGS=(slurm-wlm slurm-client slurmctld slurmd munge)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    [[ "${SLURM_TEST_NO_INSTALL:-0}" == 1 ]] && die "missing packages: ${missing[*]}"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d: do not let the packages' init scripts start daemons.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        POLICY_CREATED=1
    fi
    if ! timeout 120 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        timeout 120 apt-get update -qq
        timeout 120 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    [[ "${POLICY_CREATED:-0}" == 1 ]] && rm -f /usr/sbin/policy-rc.d
fi
for b in munged mungekey slurmctld slurmd sbatch squeue sinfo scontrol; do
    command -v "$b" >/dev/null || die "$b not found after installation"
done

# --------------------------------------------------------------- state dir --
case "$STATE" in /tmp/*|/var/tmp/*|/run/*) ;; *) die "SLURM_TEST_STATE must be under /tmp, /var/tmp or /run";; esac
if [[ -f "$STATE/pids" ]]; then
    die "$STATE/pids exists: a test cluster may still be running (run teardown_cluster.sh first)"
fi
rm -rf "$STATE"
mkdir -p "$STATE"/{ctld,slurmd,log,munge,etc}
chmod 0755 "$STATE"
chmod 0700 "$STATE/munge"
: >"$STATE/pids"

# ------------------------------------------------------------------- munge --
log "generating munge key"
if ! mungekey --create --keyfile="$STATE/munge/munge.key" 2>/dev/null; then
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1 count=1024 status=none
fi
chmod 0600 "$STATE/munge/munge.key"
log "starting munged"
munged --foreground --force \
    --socket="$STATE/munge/munge.socket.2" \
    --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munged.seed" \
    >>"$STATE/log/munged.out" 2>&1 &
echo "munged $!" >>"$STATE/pids"
for _ in $(seq 50); do [[ -S "$STATE/munge/munge.socket.2" ]] && break; sleep 0.1; done
[[ -S "$STATE/munge/munge.socket.2" ]] || { cat "$STATE/log/munged.out" "$STATE/log/munged.log" >&2 || true; die "munged did not start"; }
munge --socket="$STATE/munge/munge.socket.2" -n | unmunge --socket="$STATE/munge/munge.socket.2" >/dev/null \
    || die "munge round trip failed"

# ------------------------------------------------------------ slurm config --
HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM_TOTAL_MB="$(free -m | awk '/^Mem:/ {print $2}')"
# Leave 10% to the OS; slurmd drains the node if RealMemory exceeds what it sees.
REAL_MEMORY=$((MEM_TOTAL_MB * 9 / 10))
DEF_MEM_PER_CPU=$((REAL_MEMORY / CPUS / 2))
((DEF_MEM_PER_CPU > 1000)) && DEF_MEM_PER_CPU=1000
log "node $HOST: CPUs=$CPUS RealMemory=${REAL_MEMORY}MB DefMemPerCPU=${DEF_MEM_PER_CPU}MB, partition $PARTITION"

fill() {
    sed -e "s|@HOST@|$HOST|g" -e "s|@CPUS@|$CPUS|g" -e "s|@REAL_MEMORY@|$REAL_MEMORY|g" \
        -e "s|@DEF_MEM_PER_CPU@|$DEF_MEM_PER_CPU|g" -e "s|@STATE@|$STATE|g" \
        -e "s|@PARTITION@|$PARTITION|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
        -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" "$1"
}
fill "$HERE/slurm.conf.in" >"$STATE/etc/slurm.conf"
fill "$HERE/gres.conf.in" >"$STATE/etc/gres.conf"
if grep -q '@[A-Z_]*@' "$STATE/etc/slurm.conf" "$STATE/etc/gres.conf"; then
    die "unfilled placeholder in generated config"
fi

# slurm.conf must be found at the default path (see header).
mkdir -p /etc/slurm
for f in slurm.conf gres.conf; do
    if [[ -e /etc/slurm/$f || -L /etc/slurm/$f ]]; then
        mv /etc/slurm/$f "$STATE/etc/$f.orig"
        echo "/etc/slurm/$f" >>"$STATE/restore"
    fi
    ln -s "$STATE/etc/$f" /etc/slurm/$f
    echo "/etc/slurm/$f" >>"$STATE/links"
done
unset SLURM_CONF

# ----------------------------------------------------------- slurm daemons --
log "starting slurmctld"
slurmctld -D -c -i >>"$STATE/log/slurmctld.out" 2>&1 &
echo "slurmctld $!" >>"$STATE/pids"
log "starting slurmd"
slurmd -D -N "$HOST" >>"$STATE/log/slurmd.out" 2>&1 &
echo "slurmd $!" >>"$STATE/pids"

# Wait for the node to become idle.
state=""
for _ in $(seq 60); do
    state="$(sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null | head -1 || true)"
    [[ "$state" == idle ]] && break
    sleep 0.5
done
if [[ "$state" != idle ]]; then
    log "node state: '${state}'"
    scontrol show node "$HOST" >&2 || true
    tail -n 30 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" "$STATE/log/"*.out >&2 || true
    die "node $HOST did not become idle"
fi
log "cluster up: $(sinfo -h -o '%P %a %D %t %G')"
