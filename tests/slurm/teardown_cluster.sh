#!/usr/bin/env bash
# Stop the test cluster started by setup_cluster.sh: cancel its jobs, stop the
# daemons listed in $SLURM_TEST_STATE/pids (by PID only), and restore
# /etc/slurm. Safe to call twice or after a failed setup. Logs stay in
# $SLURM_TEST_STATE/log unless SLURM_TEST_CLEAN=1.
set -uo pipefail

STATE="${SLURM_TEST_STATE:-/tmp/sltgeom-slurm}"
log() { printf '[teardown_cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if [[ -f "$STATE/pids" ]]; then
    # Cancel whatever is still queued or running on the test cluster so that
    # no slurmstepd/job processes outlive it.
    if grep -q '^slurmctld ' "$STATE/pids"; then
        jobs="$(timeout 5 squeue -h -o '%i' 2>/dev/null | tr '\n' ' ')"
        if [[ -n "${jobs// /}" ]]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            timeout 5 scancel $jobs 2>/dev/null || true
            for _ in $(seq 20); do
                [[ -z "$(timeout 5 squeue -h -t R,CG,PD -o '%i' 2>/dev/null)" ]] && break
                sleep 0.5
            done
        fi
    fi
    # Job processes still on the node (slurmstepd runs them outside our
    # process tree): listed by slurmd itself, killed by PID.
    if grep -q '^slurmd ' "$STATE/pids"; then
        for pid in $(timeout 5 scontrol listpids 2>/dev/null | awk 'NR > 1 && $1 ~ /^[0-9]+$/ {print $1}'); do
            log "killing leftover job process $pid"
            kill -KILL "$pid" 2>/dev/null || true
        done
    fi
    # Stop the daemons: SIGTERM to all, wait up to 5 s, then SIGKILL.
    pids=()
    while read -r name pid; do
        [[ -n "${pid:-}" ]] || continue
        if kill -0 "$pid" 2>/dev/null; then
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done <"$STATE/pids"
    for _ in $(seq 50); do
        alive=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        ((${#alive[@]})) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid ignored SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -f "$STATE/pids"
fi

# Restore /etc/slurm.
if [[ -f "$STATE/links" ]]; then
    while read -r f; do
        if [[ -L "$f" && "$(readlink "$f")" == "$STATE/"* ]]; then rm -f "$f"; fi
    done <"$STATE/links"
    rm -f "$STATE/links"
fi
if [[ -f "$STATE/restore" ]]; then
    while read -r f; do
        [[ -e "$STATE/etc/$(basename "$f").orig" || -L "$STATE/etc/$(basename "$f").orig" ]] \
            && mv "$STATE/etc/$(basename "$f").orig" "$f"
    done <"$STATE/restore"
    rm -f "$STATE/restore"
fi

if [[ "${SLURM_TEST_CLEAN:-0}" == 1 ]]; then
    rm -rf "$STATE"
fi
exit 0
