#!/usr/bin/env bash
# Stop the daemons started by start_slurm.sh, by pid.
D=/tmp/slurm-ci
for p in slurmd slurmctld munged; do
  [ -f "$D/$p.pid" ] && kill "$(cat "$D/$p.pid")" 2>/dev/null || true
done
