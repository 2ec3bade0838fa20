#!/usr/bin/env bash
# End-to-end test of the `slurm` profile on a real (one-node, localhost) Slurm
# cluster. Needs root and Debian 12 (installs slurm-wlm + munge via apt).
#
#   tests/slurm/run_slurm_test.sh [WORKFLOW_DIR [CONFIG]]
#   tests/slurm/run_slurm_test.sh --toy        # throwaway workflow in tests/slurm/toy
#
# WORKFLOW_DIR defaults to the repository root (Snakefile there), CONFIG to
# tests/config/tiny.yaml (relative paths: relative to WORKFLOW_DIR).
#
# What it does (everything under one `timeout`, never touches the repo's
# results/):
#   1. copies WORKFLOW_DIR (without results/, .snakemake/, .git/, ...) into two
#      temp dirs and runs the workflow with CONFIG
#        - via the local profile (background, for comparison)
#        - via workflow/profiles/slurm on a fresh one-node cluster
#          (setup_cluster.sh), with --verbose so every `sbatch call:` is logged;
#   2. asserts on the sbatch calls: every job gets -t and --mem; jobs of the
#      rules in $GPU_RULES get --gpus=1, all others no --gpus;
#   3. compares all results/**/*.parquet of the two runs (compare_results.py);
#   4. failure behaviour (toy workflow, FAILURE_TEST=1): a job that fails on the
#      cluster is reported with its log paths, independent jobs still finish,
#      and re-running the same command resumes (only the failed job and its
#      dependants are resubmitted);
#   5. stops every daemon it started (by PID, trap on EXIT).
#
# Environment:
#   SNAKEMAKE_EXTRA_ARGS  extra args for both runs, e.g. "--config resources_gpu=true"
#   GPU_RULES             space/comma separated rules that must get --gpus=1 (default: train)
#   COMPARE_FILES         space separated paths (relative to the workdir) to compare
#                         (default: all results/**/*.parquet)
#   FAILURE_TEST          1 (default) / 0
#   SLURM_TEST_TIMEOUT    time limit in s (default 240; then cleanup; hard stop at +20 s)
#   SNAKEMAKE_TIMEOUT     limit for each snakemake run in s (default 220)
#   SNAKEMAKE             snakemake executable (default: snakemake on PATH, or
#                         /work/venv/bin/snakemake, or $REPO/.venv/bin/snakemake)
#   KEEP_WORKDIR=1        keep the temp dirs (always kept on failure)
#   STATUS_INIT_SECONDS   --slurm-init-seconds-before-status-checks (default 2)
#   SLURM_TEST_STATE      cluster state/log dir (default /tmp/sltgeom-slurm)
set -euo pipefail
# Slurm and munge daemons live in sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

# ---- never hang. After LIMIT s a watchdog sends SIGTERM to this script,
# whose EXIT trap stops the snakemake runs, then the cluster (by PID); that
# takes up to ~12 s. As a last resort the script runs under `timeout`: at
# LIMIT+17 s its whole process group (daemons included) gets SIGTERM, SIGKILL
# 3 s later -- at most 180 s in all with the default LIMIT.
LIMIT="${SLURM_TEST_TIMEOUT:-240}"
if [[ -z "${_SLTGEOM_SLURM_TEST_INNER:-}" ]]; then
    export _SLTGEOM_SLURM_TEST_INNER=1
    exec timeout -k 3 "$((LIMIT + 17))" "$0" "$@"
fi

T0=$SECONDS
log() { printf '[slurm-test %3ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }


# ------------------------------------------------------------------- args --
TOY=0
if [[ "${1:-}" == "--toy" ]]; then
    TOY=1
    shift
fi
if ((TOY)); then
    WF_DIR="$HERE/toy"
    CONFIG="$HERE/toy/config.yaml"
else
    WF_DIR="$(cd "${1:-$REPO}" && pwd)"
    CONFIG="${2:-tests/config/tiny.yaml}"
    [[ "$CONFIG" == /* ]] || CONFIG="$WF_DIR/$CONFIG"
fi
[[ -f "$WF_DIR/Snakefile" || -f "$WF_DIR/workflow/Snakefile" ]] || die "no Snakefile in $WF_DIR"
[[ -f "$CONFIG" ]] || die "config $CONFIG not found"
GPU_RULES="$(echo "${GPU_RULES-train}" | tr ',' ' ')"
FAILURE_TEST="${FAILURE_TEST:-1}"
SNAKEMAKE_TIMEOUT="${SNAKEMAKE_TIMEOUT:-220}"
# shellcheck disable=SC2206
EXTRA=(${SNAKEMAKE_EXTRA_ARGS:-})

[[ $(id -u) -eq 0 ]] || die "must run as root"
if [[ -z "${SNAKEMAKE:-}" ]]; then
    for c in "$(command -v snakemake || true)" /work/venv/bin/snakemake "$REPO/.venv/bin/snakemake"; do
        [[ -n "$c" && -x "$c" ]] && { SNAKEMAKE="$c"; break; }
    done
fi
[[ -n "${SNAKEMAKE:-}" && -x "$SNAKEMAKE" ]] || die "snakemake not found (activate the venv or set SNAKEMAKE)"
# Jobs run `python -m snakemake` with the interpreter of this snakemake
# (sbatch --export=ALL), so its bin dir must come first on PATH.
SMK_BIN="$(dirname "$SNAKEMAKE")"
export PATH="$SMK_BIN:$PATH"
PYTHON="$SMK_BIN/python"
[[ -x "$PYTHON" ]] || PYTHON="$(command -v python3)"
"$PYTHON" -c 'import snakemake_executor_plugin_slurm' 2>/dev/null \
    || die "snakemake-executor-plugin-slurm is not installed for $PYTHON"

PARTITION="${SLURM_TEST_PARTITION:-debug}"
export SLURM_TEST_PARTITION="$PARTITION"
unset SLURM_CONF SLURM_JOB_ID
WORK="$(mktemp -d /tmp/sltgeom-slurmtest.XXXXXX)"
LOCAL_PID=""
FAIL_PID=""
WATCHDOG_PID=""
OK=0

cleanup() {
    local rc=$?
    set +e
    [[ -n "$WATCHDOG_PID" ]] && kill -TERM "$WATCHDOG_PID" 2>/dev/null
    # Stop snakemake runs still going: SIGTERM via their `timeout` (snakemake
    # then scancels its jobs), after 4 s SIGKILL to snakemake and its timeout
    # (teardown_cluster.sh cancels whatever is left on the cluster).
    if [[ -f "$WORK/child_pids" ]]; then
        running=()
        for pid in $(cat "$WORK/child_pids"); do
            if grep -qa '^timeout' "/proc/$pid/cmdline" 2>/dev/null; then
                log "stopping snakemake run (timeout pid $pid)"
                running+=("$pid")
                kill -TERM "$pid" 2>/dev/null
            fi
        done
        for _ in $(seq 40); do
            alive=0
            for pid in "${running[@]}"; do
                grep -qa '^timeout' "/proc/$pid/cmdline" 2>/dev/null && alive=1
            done
            ((alive)) || break
            sleep 0.1
        done
        for pid in "${running[@]}"; do
            if grep -qa '^timeout' "/proc/$pid/cmdline" 2>/dev/null; then
                for child in $(pgrep -P "$pid"); do kill -KILL "$child" 2>/dev/null; done
                kill -KILL "$pid" 2>/dev/null
            fi
        done
    fi
    for pid in $LOCAL_PID $FAIL_PID; do
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    done
    "$HERE/teardown_cluster.sh"
    if ((OK)) && [[ "${KEEP_WORKDIR:-0}" != 1 ]]; then
        rm -rf "$WORK"
    else
        log "work dir kept: $WORK (cluster logs: ${SLURM_TEST_STATE:-/tmp/sltgeom-slurm}/log)"
    fi
    log "finished with exit code $rc after $((SECONDS - T0)) s"
    exit "$rc"
}
trap cleanup EXIT
trap 'if [[ -e "$WORK/timed_out" ]]; then exit 124; fi; log "interrupted"; exit 143' TERM INT

# Watchdog (see the top of the file).
(
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$LIMIT" &
    sleeper=$!
    wait "$sleeper"
    log "FAIL: time limit of ${LIMIT}s reached (SLURM_TEST_TIMEOUT), stopping"
    : >"$WORK/timed_out"
    kill -TERM $$
) &
WATCHDOG_PID=$!

# Run snakemake in DIR under `timeout`, output to LOG; the timeout PID is
# recorded so that cleanup can stop it (it forwards SIGTERM to snakemake,
# which then scancels its jobs). Returns snakemake's exit status.
run_smk() { # DIR LOG ARGS...
    local dir="$1" logf="$2"
    shift 2
    (cd "$dir" && exec timeout -k 10 "$SNAKEMAKE_TIMEOUT" "$SNAKEMAKE" "$@") >"$logf" 2>&1 &
    local pid=$!
    echo "$pid" >>"$WORK/child_pids"
    wait "$pid"
}

# Copy the workflow so that the runs never touch the repo's results/ etc.
copy_workflow() { # SRC DEST
    mkdir -p "$2"
    tar -C "$1" -cf - \
        --exclude=./results --exclude=./resources --exclude=./logs --exclude=./benchmarks \
        --exclude=./.snakemake --exclude=./.git --exclude=./.venv --exclude=./venv \
        --exclude=./.pytest_cache --exclude=./.ruff_cache --exclude=./.benchmarks \
        --exclude='*/__pycache__' --exclude='*.egg-info' . | tar -C "$2" -xf -
    if [[ -f "$1/config/config.yaml" && "$1" == "$WF_DIR" ]]; then
        cp "$CONFIG" "$2/config/config.yaml"
    fi
}

# The config: if the workflow has config/config.yaml (its `configfile:`), the
# copies get CONFIG in its place -- passing --configfile would deep-merge the
# two (studies of both would run). Otherwise it is passed with --configfile.
CONFIG_ARGS=()
[[ -f "$WF_DIR/config/config.yaml" ]] || CONFIG_ARGS=(--configfile "$CONFIG")
SMK_COMMON=("${CONFIG_ARGS[@]}" --printshellcmds "${EXTRA[@]}")
SLURM_ARGS=(
    --profile "$REPO/workflow/profiles/slurm"
    # the profile's placeholders replaced for the test cluster (no account:
    # without slurmdbd the plugin cannot validate one)
    --default-resources "slurm_partition=$PARTITION" runtime=10 mem_mb=500
    # no accounting on the test cluster: sacct would fail and the run hang
    --slurm-status-command squeue
    # Status polling: the first check after --seconds-between-status-checks,
    # then every init-seconds after a job finished, +10 s per check that saw
    # none finish (i, i+10, i+20, ...: with the plugin's default 40 a 10-s job
    # is noticed after 40 s, with 2 after 14 s).
    --seconds-between-status-checks 2
    --slurm-init-seconds-before-status-checks "${STATUS_INIT_SECONDS:-2}"
    --latency-wait 5 --retries 0 --jobs 4
    --verbose
)

# --------------------------------------------------------------- local run --
log "workflow: $WF_DIR, config: $CONFIG, extra args: ${EXTRA[*]:-(none)}"
copy_workflow "$WF_DIR" "$WORK/local"
copy_workflow "$WF_DIR" "$WORK/slurm"
log "starting local run (background) in $WORK/local"
run_smk "$WORK/local" "$WORK/local.log" --profile "$REPO/workflow/profiles/local" \
    --cores 1 "${SMK_COMMON[@]}" &
LOCAL_PID=$!

# ---------------------------------------------------------------- cluster --
log "setting up the Slurm cluster"
"$HERE/setup_cluster.sh"

# -------------------------------------------------------- failure / resume --
# Runs concurrently with the main slurm run (own workdir, own snakemake) to
# stay within the time budget. Output: $WORK/failtest.log; exit status 0 = ok.
failure_test() {
    set -euo pipefail
    log() { printf '[slurm-test %3ds] [failure test] %s\n' $((SECONDS - T0)) "$*"; }
    die() { log "FAIL: $*"; exit 1; }
    local rc slog resubmitted
    local FAIL_ARGS=("${SLURM_ARGS[@]}" --configfile "$HERE/toy/config.yaml")
    log "toy workflow, train seed 1 fails on the cluster"
    copy_workflow "$HERE/toy" "$WORK/fail"
    set +e
    run_smk "$WORK/fail" "$WORK/fail1.log" "${FAIL_ARGS[@]}" --config 'seeds=[0,1]' fail_seed=1
    rc=$?
    set -e
    ((rc == 124 || rc == 137)) && die "failing run timed out"
    ((rc != 0)) || die "run with a failing job exited 0"
    grep -q "Error in rule train" "$WORK/fail1.log" || die "no 'Error in rule train' in $WORK/fail1.log"
    grep -q "logs/train/seed1.log" "$WORK/fail1.log" || die "rule log path not reported"
    slog="$(grep -o "[^ ']*\.snakemake/slurm_logs/rule_train/1/[0-9]*\.log" "$WORK/fail1.log" | head -1)"
    [[ -n "$slog" ]] || die "Slurm log path of the failed job not reported"
    [[ -f "$slog" || -f "$WORK/fail/$slog" ]] || die "reported Slurm log $slog does not exist"
    grep -q "deliberate failure" "$WORK/fail/logs/train/seed1.log" || die "rule log missing"
    [[ -f "$WORK/fail/results/train/seed0.parquet" ]] || die "independent job (seed 0) did not finish (keep-going)"
    [[ ! -e "$WORK/fail/results/summary.parquet" ]] || die "summary exists despite failed input"
    log "failure reported with logs: logs/train/seed1.log, $slog"

    log "resume with the same command minus the failure"
    set +e
    run_smk "$WORK/fail" "$WORK/fail2.log" "${FAIL_ARGS[@]}" --config 'seeds=[0,1]'
    rc=$?
    set -e
    ((rc == 0)) || { tail -n 40 "$WORK/fail2.log"; die "resumed run failed (exit $rc)"; }
    resubmitted="$(grep -o "sbatch call: .*--comment [^ ]*" "$WORK/fail2.log" | sed 's/.*--comment //' | sort | tr '\n' ' ')"
    [[ "$resubmitted" == "rule_summarize rule_train_wildcards_1 " ]] \
        || die "resume resubmitted '$resubmitted' (expected only train seed 1 and summarize)"
    log "resume resubmitted only: $resubmitted"
    log "ok"
}

if [[ "$FAILURE_TEST" == 1 ]]; then
    log "starting the failure test (background, toy workflow)"
    failure_test >"$WORK/failtest.log" 2>&1 &
    FAIL_PID=$!
fi

# -------------------------------------------------------------- slurm run --
log "running the workflow through the slurm profile in $WORK/slurm"
set +e
run_smk "$WORK/slurm" "$WORK/slurm.log" "${SLURM_ARGS[@]}" "${SMK_COMMON[@]}"
rc=$?
set -e
if ((rc != 0)); then
    tail -n 60 "$WORK/slurm.log" >&2
    for f in "$WORK"/slurm/.snakemake/slurm_logs/*/*.log "$WORK"/slurm/.snakemake/slurm_logs/*/*/*.log; do
        [[ -f "$f" ]] && { echo "==> $f" >&2; tail -n 30 "$f" >&2; }
    done
    ((rc == 124 || rc == 137)) && die "slurm run timed out after ${SNAKEMAKE_TIMEOUT}s"
    die "slurm run failed (exit $rc), log: $WORK/slurm.log"
fi
log "slurm run finished"

# ------------------------------------------------------- sbatch assertions --
check_sbatch_lines() { # LOGFILE -> prints summary, returns 1 on problems
    "$PYTHON" - "$1" "$GPU_RULES" <<'EOF'
import re, sys
log, gpu_rules = sys.argv[1], set(sys.argv[2].split())
calls = [l.split("sbatch call: ", 1)[1] for l in open(log, errors="replace") if "sbatch call: " in l]
bad, seen = [], {}
for c in calls:
    flags = c.split(" --wrap=", 1)[0]
    m = re.search(r"--comment '?rule_(\S+?)(?:_wildcards_\S*)?'?\s", flags + " ")
    if not m:
        bad.append(f"cannot find rule in: {flags}"); continue
    rule = m.group(1)
    seen.setdefault(rule, flags)
    if not re.search(r"\s-t \S+", flags):
        bad.append(f"{rule}: no -t (runtime): {flags}")
    if not re.search(r"\s--mem(-per-cpu)? \d+", flags):
        bad.append(f"{rule}: no --mem: {flags}")
    gpus = re.findall(r"--gpus=(\S+)", flags)
    if rule in gpu_rules and gpus != ["1"]:
        bad.append(f"{rule}: expected --gpus=1, got {gpus}: {flags}")
    if rule not in gpu_rules and gpus:
        bad.append(f"{rule}: unexpected --gpus: {flags}")
if not calls:
    bad.append("no 'sbatch call:' lines in the log (was --verbose given?)")
for r in sorted(gpu_rules - set(seen)):
    bad.append(f"GPU rule {r} was never submitted")
for rule, flags in sorted(seen.items()):
    short = re.sub(r" (--job-name|--output|--comment|-D) \S+| --parsable\b| --export=ALL", "", flags)
    print(f"  {rule:>20}: {short}")
print(f"  {len(calls)} sbatch calls")
for b in bad:
    print("  PROBLEM:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
}
log "sbatch calls (one per rule):"
check_sbatch_lines "$WORK/slurm.log" || die "sbatch assertions failed"
grep -h "sbatch call:" "$WORK/slurm.log" | sed 's/ --wrap=.*//' >"$WORK/sbatch_calls.txt"

node_state="$(sinfo -h -N -o '%t' | sort -u | tr '\n' ' ')"
[[ "$node_state" == "idle " || "$node_state" == "mix " || "$node_state" == "alloc " ]] \
    || die "node state after the run: $node_state"

# ------------------------------------------------------- compare with local --
log "waiting for the local run"
set +e
wait "$LOCAL_PID"
lrc=$?
set -e
LOCAL_PID=""
if ((lrc != 0)); then
    tail -n 40 "$WORK/local.log" >&2
    die "local run failed (exit $lrc), log: $WORK/local.log"
fi
log "comparing results (slurm vs local)"
# shellcheck disable=SC2086
"$PYTHON" "$HERE/compare_results.py" "$WORK/slurm" "$WORK/local" ${COMPARE_FILES:-} \
    || die "results of the slurm run differ from the local run"

if [[ -n "$FAIL_PID" ]]; then
    log "waiting for the failure test"
    set +e
    wait "$FAIL_PID"
    frc=$?
    set -e
    FAIL_PID=""
    cat "$WORK/failtest.log" >&2
    ((frc == 0)) || die "failure test failed (logs: $WORK/fail1.log, $WORK/fail2.log)"
fi

log "sbatch calls of the main run: $WORK/sbatch_calls.txt"
sed 's/^/  /' "$WORK/sbatch_calls.txt" >&2
OK=1
log "PASS"
