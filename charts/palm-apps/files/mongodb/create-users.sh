#!/bin/bash
# Creates the users Palm connects as besides `palm` (readWrite on the
# database, palmdao; the chart's auth.usernames) — each with nothing more
# than it needs:
#   palm_readonly  role `read` on the database, plus palmPlatformSnapshot:
#                  insert/update on <database>.leases and
#                  <database>.platform_snapshots — palmplatformmetrics reads
#                  everything and writes only its lease and the snapshot it
#                  shares between replicas (ADR 0008).
#   palm_backup    role `backup` (mongodump --oplog of the whole replica set)
#                  and palmBackupRecord: insert/update on <database>.backups,
#                  where each successful run records itself
#                  (scripts/backup/palmbackup.py record): the palm-backup
#                  CronJob, whose ExternalSecret builds MONGO_URI with this
#                  user and the same `backup_password`.
# The bitnami image runs this once, on the first primary's initialisation;
# on a replica set initialised before this script existed, run it once by
# hand (docs/disaster-recovery.md, "MongoDB users"). It is idempotent: a user
# or role that exists is updated to this definition and password. Passwords
# come from the mongodb-users Secret (ExternalSecret: PALM_READONLY_PASSWORD,
# PALM_BACKUP_PASSWORD); root's from the chart (a file since usePasswordFiles).
set -euo pipefail
root_password="${MONGODB_ROOT_PASSWORD:-$(cat "${MONGODB_ROOT_PASSWORD_FILE:?neither MONGODB_ROOT_PASSWORD nor _FILE is set}")}"
: "${PALM_READONLY_PASSWORD:?PALM_READONLY_PASSWORD is not set (mongodb-users Secret)}"
: "${PALM_BACKUP_PASSWORD:?PALM_BACKUP_PASSWORD is not set (mongodb-users Secret)}"
mongosh admin --quiet -u root -p "$root_password" --eval "
  const db_ = '{{ .database }}';
  function upsertUser(name, pwd, roles) {
    if (db.getUser(name)) { db.updateUser(name, {pwd: pwd, roles: roles}); }
    else { db.createUser({user: name, pwd: pwd, roles: roles}); }
  }
  const record = [{resource: {db: db_, collection: 'backups'}, actions: ['insert', 'update']}];
  if (db.getRole('palmBackupRecord')) { db.updateRole('palmBackupRecord', {privileges: record, roles: []}); }
  else { db.createRole({role: 'palmBackupRecord', privileges: record, roles: []}); }
  const snapshot = ['leases', 'platform_snapshots'].map(c => ({resource: {db: db_, collection: c}, actions: ['insert', 'update']}));
  if (db.getRole('palmPlatformSnapshot')) { db.updateRole('palmPlatformSnapshot', {privileges: snapshot, roles: []}); }
  else { db.createRole({role: 'palmPlatformSnapshot', privileges: snapshot, roles: []}); }
  upsertUser('palm_readonly', process.env.PALM_READONLY_PASSWORD,
             [{role: 'read', db: db_}, {role: 'palmPlatformSnapshot', db: 'admin'}]);
  upsertUser('palm_backup', process.env.PALM_BACKUP_PASSWORD,
             [{role: 'backup', db: 'admin'}, {role: 'palmBackupRecord', db: 'admin'}]);"
