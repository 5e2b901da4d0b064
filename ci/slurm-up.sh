#!/usr/bin/env bash
# Start a real single-node SLURM (munged + slurmctld + slurmd) on this machine.
#
# Idempotent: installs only what is missing, reuses daemons that are already
# running, and waits (bounded) until `sinfo` reports the node idle.
# Needs root; works without systemd (daemons are started by hand).
#
# Environment:
#   PYTHON              interpreter that gets dask-jobqueue (default: python3)
#   SLURM_UP_TIMEOUT    seconds to wait for the node to become idle (default: 60)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
TIMEOUT="${SLURM_UP_TIMEOUT:-60}"
CONF_SRC="$HERE/slurm.conf"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
NODE=localhost

log() { echo "slurm-up: $*"; }
die() { echo "slurm-up: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -f "$CONF_SRC" ] || die "missing $CONF_SRC"

# --------------------------------------------------------------------------
# 1. Packages
# --------------------------------------------------------------------------
missing=()
for pair in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge; do
    cmd="${pair%%:*}"; pkg="${pair#*:}"
    if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep maintainer scripts from trying to start services themselves; we
    # start the daemons by hand below.
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -qq || { [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get update failed"; }
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || { [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get install ${missing[*]} failed"; }
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
export PATH="$PATH:/usr/sbin:/sbin"

if ! "$PYTHON" -c 'import dask_jobqueue' >/dev/null 2>&1; then
    log "installing dask-jobqueue into $("$PYTHON" -c 'import sys; print(sys.executable)')"
    "$PYTHON" -m pip install -q dask-jobqueue || die "pip install dask-jobqueue failed"
fi

# --------------------------------------------------------------------------
# 2. munge
# --------------------------------------------------------------------------
id munge >/dev/null 2>&1 || die "user 'munge' does not exist (munge package broken?)"
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if munge_ok; then
    log "munged already running"
else
    log "starting munged"
    rm -f /run/munge/munged.pid  # stale pid/socket from an unclean stop
    runuser -u munge -- munged --force
    for _ in $(seq 1 50); do munge_ok && break; sleep 0.1; done
    munge_ok || die "munged did not come up (see /var/log/munge/munged.log)"
fi

# --------------------------------------------------------------------------
# 3. Config and directories
# --------------------------------------------------------------------------
install -d -m 0755 "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
conf_changed=0
if ! cmp -s "$CONF_SRC" "$CONF"; then
    install -m 0644 "$CONF_SRC" "$CONF"
    conf_changed=1
fi

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --------------------------------------------------------------------------
# 4. slurmctld
# --------------------------------------------------------------------------
if pid_alive /run/slurm/slurmctld.pid && scontrol ping 2>/dev/null | grep -q 'is UP'; then
    log "slurmctld already running"
    if [ "$conf_changed" = 1 ]; then
        log "config changed: scontrol reconfigure"
        scontrol reconfigure || die "scontrol reconfigure failed"
    fi
else
    log "starting slurmctld"
    rm -f /run/slurm/slurmctld.pid
    # -c: start from a clean state (no jobs left over from a previous run).
    slurmctld -c
    for _ in $(seq 1 "$((TIMEOUT * 5))"); do
        scontrol ping 2>/dev/null | grep -q 'is UP' && break
        sleep 0.2
    done
    scontrol ping 2>/dev/null | grep -q 'is UP' \
        || die "slurmctld did not answer within ${TIMEOUT}s (see /var/log/slurm/slurmctld.log)"
fi

# --------------------------------------------------------------------------
# 5. slurmd
# --------------------------------------------------------------------------
if pid_alive /run/slurm/slurmd.pid; then
    log "slurmd already running"
else
    log "starting slurmd"
    rm -f /run/slurm/slurmd.pid
    slurmd -N "$NODE"
fi

# --------------------------------------------------------------------------
# 6. Wait for the node to be idle
# --------------------------------------------------------------------------
node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1; }
deadline=$((SECONDS + TIMEOUT))
resumed=0
state=""
while [ "$SECONDS" -lt "$deadline" ]; do
    state="$(node_state)"
    case "$state" in
        idle|mixed|allocated) break ;;
        down*|drain*|drained*|fail*)
            if [ "$resumed" = 0 ]; then
                log "node is '$state'; trying scontrol update state=resume"
                scontrol update nodename="$NODE" state=resume || true
                resumed=1
            fi ;;
    esac
    sleep 0.5
done
case "$state" in
    idle|mixed|allocated)
        log "SLURM is up: node $NODE is $state (${SECONDS}s)"
        sinfo ;;
    *)
        reason="$(sinfo -h -N -n "$NODE" -o '%E' 2>/dev/null || true)"
        die "node $NODE not idle after ${TIMEOUT}s (state='$state' reason='$reason'); see /var/log/slurm/slurmd.log and slurmctld.log" ;;
esac
