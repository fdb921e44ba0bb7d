#!/usr/bin/env bash
# Start a single-node SLURM (munged, slurmctld, slurmd) for the cluster-path tests.
# Facts this relies on (measured with Debian 12's slurm-wlm 22.05.8): slurm.conf must live at
# /etc/slurm/slurm.conf (with only SLURM_CONF set, the job fails inside its allocation: the
# job-step plugin strips SLURM_* variables before its nested srun); no cgroups; accounting disabled (so Snakemake polls
# with squeue: with sacct it would never learn that a job ended; README, "On a cluster (SLURM)").
set -euo pipefail
D=/tmp/slurm-ci
mkdir -p "$D/state" "$D/spool"
chown munge:munge "$D" 2>/dev/null || true
chmod 755 "$D"
HOST=$(hostname -s)
# The test node advertises at least 8 CPUs (config_overrides): the test's jobs are small and
# mostly wait on status polling, so running several side by side keeps the test quick.
CPUS=$(( $(nproc) > 8 ? $(nproc) : 8 ))
MEM=$(awk '/MemTotal/{print int($2/1024*0.8)}' /proc/meminfo)
mkdir -p /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ketastats
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$D/munge.socket.2
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=600
SlurmdParameters=config_overrides
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
CONF
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
runuser -u munge -- /usr/sbin/munged --socket="$D/munge.socket.2" --pid-file="$D/munged.pid" \
  --log-file="$D/munged.log" --seed-file="$D/munged.seed"
/usr/sbin/slurmctld
/usr/sbin/slurmd
for _ in $(seq 1 30); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed)'; then echo "SLURM up: $(sinfo -h)"; exit 0; fi
  sleep 1
done
echo "SLURM did not come up; logs:" >&2
tail -n 20 "$D"/*.log >&2 || true
exit 1
