#!/bin/bash
# Creates palm_readonly, the user palmplatformmetrics connects as: role `read`
# on the environment's database, nothing else. Runs once, on the first
# primary's initialisation; the password comes from the mongodb-readonly
# Secret (ExternalSecret, key PALM_READONLY_PASSWORD).
set -euo pipefail
mongosh admin --quiet -u root -p "$MONGODB_ROOT_PASSWORD" --eval "
  db.createUser({user: 'palm_readonly', pwd: process.env.PALM_READONLY_PASSWORD,
                 roles: [{role: 'read', db: '{{ .database }}'}]})"
