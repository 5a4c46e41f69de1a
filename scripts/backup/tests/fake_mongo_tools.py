#!/usr/bin/env python3
"""Stand-ins for mongodump and mongorestore in the S3 tests (the real tools
cannot be installed here; the restore drill in GitHub Actions runs them).

  fake_mongo_tools.py mongodump --config=F --archive=PATH --gzip --oplog --quiet
      checks the flags backup.sh must pass and that the config file holds the
      URI (never the command line), then writes a gzip mongodump archive
      whose oplog ends now;
  fake_mongo_tools.py mongorestore --config=F --archive=PATH --gzip --oplogReplay --drop ...
      checks the flags and appends the archive it was given to $FAKE_RESTORE_LOG.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bson import Timestamp  # noqa: E402
from verify_test import write_archive  # noqa: E402


def cluster_time(uri: str) -> Timestamp:
    """The server's latest operation time (a real replica set refuses a
    snapshot read later than it); the stand-in has none: the clock."""
    from pymongo import MongoClient
    reply = MongoClient(uri, serverSelectionTimeoutMS=10000).admin.command("hello")
    return reply.get("operationTime") or Timestamp(int(time.time()), 1)


def options(argv):
    flags = {}
    for arg in argv:
        name, _, value = arg.partition("=")
        flags[name] = value
    return flags


def main() -> int:
    tool, flags = sys.argv[1], options(sys.argv[2:])
    with open(flags["--config"], encoding="utf-8") as f:
        config = f.read()
        uri = config.split("'")[1] if "'" in config else ""
        if not config.startswith("uri: 'mongodb://"):
            print(f"{tool}: the config file does not hold the URI", file=sys.stderr)
            return 2
    if any(a.startswith("mongodb://") for a in sys.argv):
        print(f"{tool}: the URI is on the command line", file=sys.stderr)
        return 2
    if tool == "mongodump":
        for flag in ("--archive", "--gzip", "--oplog"):
            if flag not in flags:
                print(f"mongodump: {flag} missing", file=sys.stderr)
                return 2
        if os.environ.get("FAKE_DUMP_FAIL"):
            print("mongodump: Failed: connection refused", file=sys.stderr)
            return 1
        write_archive(flags["--archive"], True, [cluster_time(uri)])
        return 0
    for flag in ("--archive", "--gzip", "--oplogReplay", "--drop"):
        if flag not in flags:
            print(f"mongorestore: {flag} missing", file=sys.stderr)
            return 2
    with open(os.environ["FAKE_RESTORE_LOG"], "a", encoding="utf-8") as log:
        log.write(os.path.basename(flags["--archive"]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
