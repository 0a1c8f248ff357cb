#!/bin/bash
# usage: scripts/services.sh up|down|env
# Starts a one-node Slurm cluster and a PostgreSQL server for the tests (CI runs it; a developer can too). Debian 12,
# root, no systemd; every path under $SO. Then: source <($0 env) to point slurm commands and the tests at them.
set -euo pipefail
SO=${SO:-/tmp/ganboard-services}; PGBIN=/usr/lib/postgresql/15/bin; PGPORT=${PGPORT:-5433}
export SLURM_CONF=$SO/slurm/slurm.conf
env() {  # what a shell or the tests need to reach the services (eval "$(scripts/services.sh env)")
  echo "export SLURM_CONF=$SLURM_CONF PATH=$SO/bin:\$PATH GLOO_SOCKET_IFNAME=lo"
  echo "export GANBOARD_TEST_PG_URL=postgresql+psycopg://ganboard:ganboard@127.0.0.1:$PGPORT/ganboard"
}
up() {
  down >/dev/null 2>&1 || true
  if ! command -v slurmctld >/dev/null || [ ! -x $PGBIN/initdb ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge postgresql >/dev/null
  fi
  rm -rf $SO
  # --- munge (root is fine; key + socket under $SO)
  mkdir -p $SO/munge/run $SO/munge/lib $SO/munge/log $SO/bin
  chmod 700 $SO/munge/lib $SO/munge/log
  mungekey -c -f -k $SO/munge/munge.key && chmod 400 $SO/munge/munge.key
  munged --key-file=$SO/munge/munge.key --socket=$SO/munge/run/munge.socket.2 \
    --pid-file=$SO/munge/run/munged.pid --seed-file=$SO/munge/lib/munged.seed --log-file=$SO/munge/log/munged.log
  # --- slurm: one node, no cgroups, no accounting
  S=$SO/slurm; mkdir -p $S/state $S/spool $S/run $S/log
  cat > $SLURM_CONF <<CONF
ClusterName=ganboard
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SO/munge/run/munge.socket.2
SlurmUser=root
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/run/slurmctld.pid
SlurmdPidFile=$S/run/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerParameters=batch_sched_delay=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=5
MailProg=/bin/true
$(slurmd -C | head -1) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  slurmctld -i && slurmd
  for i in $(seq 100); do [ "$(sinfo -h -o %T)" = idle ] && break; sleep 0.2; done
  [ "$(sinfo -h -o %T)" = idle ] || { tail $S/log/*.log; return 1; }
  # sacct shim so submitit sees CANCELLED/FAILED without slurmdbd (put $SO/bin first in PATH)
  cat > $SO/bin/sacct <<'PY'
#!/usr/bin/python3
import subprocess, sys
ids = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "-j"]
print("JobID|State|NodeList")
for jid in ids:
    out = subprocess.run(["scontrol", "-o", "show", "job", jid], capture_output=True, text=True).stdout
    for line in out.splitlines():
        kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
        t = kv.get("ArrayTaskId"); name = f"{kv['ArrayJobId']}_{t}" if t and t != "N/A" else kv.get("JobId", jid)
        print(f"{name}|{kv.get('JobState', 'UNKNOWN')}|{kv.get('NodeList', '')}")
PY
  chmod +x $SO/bin/sacct
  # --- postgres: throwaway cluster owned by the postgres user (initdb/pg_ctl refuse root)
  mkdir -p $SO/pg && chown postgres: $SO/pg
  runuser -u postgres -- $PGBIN/initdb -D $SO/pg/data -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --no-sync -E UTF8 --locale=C.UTF-8 >$SO/pg/initdb.log
  runuser -u postgres -- $PGBIN/pg_ctl -D $SO/pg/data -l $SO/pg/server.log -w start -o \
    "-p $PGPORT -k $SO/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  psql -h $SO/pg -p $PGPORT -U postgres -qv ON_ERROR_STOP=1 \
    -c "CREATE ROLE ganboard LOGIN PASSWORD 'ganboard'" -c "CREATE DATABASE ganboard OWNER ganboard"
  echo "GANBOARD_TEST_PG_URL=postgresql+psycopg://ganboard:ganboard@127.0.0.1:$PGPORT/ganboard"
  psql -h $SO/pg -p $PGPORT -U postgres -qc "ALTER ROLE ganboard CREATEDB"  # the tests make a database each
}
down() {
  set +e
  [ -f $SLURM_CONF ] && scancel --user=root 2>/dev/null
  for f in $SO/slurm/run/slurmd.pid $SO/slurm/run/slurmctld.pid $SO/munge/run/munged.pid; do
    [ -f $f ] || continue; p=$(cat $f); kill $p 2>/dev/null
    for i in $(seq 50); do kill -0 $p 2>/dev/null || break; sleep 0.1; done
  done
  [ -f $SO/pg/data/postmaster.pid ] && runuser -u postgres -- $PGBIN/pg_ctl -D $SO/pg/data -m fast -w stop
  return 0
}
"$@"
