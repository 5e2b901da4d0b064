#!/usr/bin/env bash
# Stop the single-node SLURM started by ci/slurm-up.sh: cancel all jobs, wait
# (bounded) for an empty queue, then stop slurmd, slurmctld and munged.
# Safe to run when nothing is running.
#
# Environment:
#   SLURM_DOWN_TIMEOUT  seconds to wait for the queue / each daemon (default: 30)
set -uo pipefail

TIMEOUT="${SLURM_DOWN_TIMEOUT:-30}"
export PATH="$PATH:/usr/sbin:/sbin"
log() { echo "slurm-down: $*"; }
rc=0

# 1. Cancel jobs and wait for an empty queue (only if the controller answers).
if command -v scontrol >/dev/null 2>&1 && scontrol ping 2>/dev/null | grep -q 'is UP'; then
    if [ -n "$(squeue -h -o '%i' 2>/dev/null)" ]; then
        log "cancelling all jobs"
        # shellcheck disable=SC2046
        scancel $(squeue -h -o '%i' 2>/dev/null) 2>/dev/null || true
    fi
    deadline=$((SECONDS + TIMEOUT))
    while [ -n "$(squeue -h -o '%i' 2>/dev/null)" ] && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.5
    done
    left="$(squeue -h -o '%i %T' 2>/dev/null)"
    if [ -n "$left" ]; then
        log "WARNING: jobs still queued after ${TIMEOUT}s, stopping anyway:"
        echo "$left"
        rc=1
    else
        log "queue empty"
    fi
else
    log "slurmctld not answering; skipping job cancellation"
fi

# 2. Stop daemons via their pid files (never by process name).
stop_pidfile() {  # name pidfile
    local name="$1" pidfile="$2" pid
    if [ ! -s "$pidfile" ]; then
        log "$name not running (no $pidfile)"
        return 0
    fi
    pid="$(cat "$pidfile")"
    if ! kill -0 "$pid" 2>/dev/null; then
        log "$name not running (stale $pidfile)"
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "WARNING: $name (pid $pid) ignored SIGTERM for ${TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        rc=1
    fi
    rm -f "$pidfile"
}

stop_pidfile slurmd /run/slurm/slurmd.pid
stop_pidfile slurmctld /run/slurm/slurmctld.pid
stop_pidfile munged /run/munge/munged.pid

log "done"
exit "$rc"
