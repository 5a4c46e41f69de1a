#!/usr/bin/env python3
"""Tests of scripts/backup/palmbackup.py against a database that palmdao and
palmvalidator filled through the API (scripts/backup/seed.sh):

- the archive reader finds the oplog's end in a mongodump archive (plain and
  gzip), and refuses a file that is not one;
- `manifest` counts every collection and `record` writes the backup record
  in the shape docs/metrics.md gives;
- `verify` passes on the intact data (which includes a superseded vote, a
  weighted vote and a rejected one) and fails, naming the collection or the
  proposal, for: a missing document, a tally that disagrees with its votes,
  a counted vote that is gone, a ballot that keeps a superseded vote, a
  valid vote left uncounted, a vote whose voting power changed.

Every mutation is undone before the next, so each failure has one cause.
Usage: verify_test.py --uri URI --db DATABASE --work DIR
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import struct
import subprocess
import sys

import bson
from bson import Timestamp
from pymongo import MongoClient

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "..", "palmbackup.py")
PASSED: list[str] = []


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)


def check(name: str, condition: bool, detail: str = "") -> None:
    if not condition:
        print(f"FAIL {name}\n{detail}", file=sys.stderr)
        sys.exit(1)
    PASSED.append(name)
    print(f"ok   {name}")


def write_archive(path: str, compress: bool, oplog_ts: list[Timestamp]) -> None:
    """A mongodump archive per the mongo-tools archive specification: magic,
    header, collection metadata, terminator, interleaved namespace segments
    and EOF headers. Two data segments for one collection, then the oplog."""
    term = b"\xff\xff\xff\xff"
    out = struct.pack("<I", 0x8199E26D)
    out += bson.encode({"concurrent_collections": 4, "version": "0.1",
                        "server_version": "8.0.4", "tool_version": "100.10.0"})
    out += bson.encode({"db": "palm", "collection": "votes", "metadata": "{}", "size": 0})
    out += term
    for chunk in ([{"_id": 1}, {"_id": 2}], [{"_id": 3}]):
        out += bson.encode({"db": "palm", "collection": "votes", "EOF": False, "CRC": 0})
        out += b"".join(bson.encode(d) for d in chunk) + term
    out += bson.encode({"db": "palm", "collection": "votes", "EOF": True, "CRC": 0}) + term
    out += bson.encode({"db": "", "collection": "oplog", "EOF": False, "CRC": 0})
    out += b"".join(bson.encode({"ts": ts, "op": "n", "ns": "", "o": {}}) for ts in oplog_ts) + term
    out += bson.encode({"db": "", "collection": "oplog", "EOF": True, "CRC": 0}) + term
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as f:
        f.write(out)


def expect_failure(name: str, args: list[str], *needles: str) -> None:
    result = run(*args)
    missing = [n for n in needles if n not in result.stderr]
    check(name, result.returncode == 1 and not missing,
          f"exit {result.returncode}, missing {missing} in:\n{result.stderr}{result.stdout}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--work", required=True)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    db = MongoClient(args.uri, tz_aware=True)[args.db]

    # ---- archive reader
    stamps = [Timestamp(1764460000, 3), Timestamp(1764460007, 1), Timestamp(1764460007, 2)]
    for compress in (False, True):
        path = os.path.join(args.work, f"synthetic-{compress}.archive")
        write_archive(path, compress, stamps)
        got = run("oplog-end", path)
        check(f"oplog-end reads the newest oplog entry (gzip={compress})",
              got.returncode == 0 and got.stdout.strip() == "1764460007:2", got.stdout + got.stderr)
    junk = os.path.join(args.work, "junk.archive")
    with open(junk, "wb") as f:
        f.write(b"PK\x03\x04 not an archive")
    got = run("oplog-end", junk)
    check("oplog-end refuses a file that is not an archive",
          got.returncode == 2 and "not a mongodump archive" in got.stderr, got.stderr)
    no_oplog = os.path.join(args.work, "no-oplog.archive")
    write_archive(no_oplog, True, [])
    got = run("oplog-end", no_oplog)
    check("oplog-end refuses an archive dumped without --oplog",
          got.returncode == 2 and "no oplog entries" in got.stderr, got.stderr)

    # ---- manifest and record: an archive whose oplog ends at the server's
    # latest operation time (a real replica set refuses a snapshot read at a
    # time it no longer or not yet holds; the stand-in has none: the clock)
    now = db.client.admin.command("hello").get("operationTime") or Timestamp(int(dt.datetime.now().timestamp()), 1)
    archive = os.path.join(args.work, "now.archive")
    write_archive(archive, True, [now])
    manifest = os.path.join(args.work, "manifest.json")
    key = "palm/2026/01/02/palm-20260102T030405Z.archive.gz"
    got = run("manifest", "--uri", args.uri, "--db", args.db, "--archive", archive,
              "--key", key, "--started-at", "2026-01-02T03:04:05Z", "--out", manifest)
    check("manifest runs", got.returncode == 0, got.stderr)
    with open(manifest, encoding="utf-8") as f:
        written = json.load(f)
    live = {n: db[n].count_documents({}) for n in db.list_collection_names() if not n.startswith("system.")}
    check("manifest counts every collection", written["counts"] == live, f"{written['counts']} != {live}")
    check("manifest points in time at the archive's oplog end", written["oplog_end"] == f"{now.time}:{now.inc}",
          written["oplog_end"])
    check("the seed has the shapes the check needs",
          live.get("votes", 0) >= 8 and db.proposals.count_documents({"status": "closed"}) >= 2,
          str(live))

    # Whatever happens below, the seeded documents are put back as they were.
    saved = {name: list(db[name].find()) for name in ("discussions", "proposals", "votes")}
    try:
        return mutations(args, db, manifest, written, archive, key)
    finally:
        for name, documents in saved.items():
            db[name].delete_many({})
            db[name].insert_many(documents)


def mutations(args, db, manifest: str, written: dict, archive: str, key: str) -> int:
    # ---- verify on intact data
    verify = ["verify", "--uri", args.uri, "--db", args.db, "--manifest", manifest]
    got = run(*verify)
    check("verify passes on the intact database", got.returncode == 0, got.stderr + got.stdout)
    summary = json.loads(got.stdout)
    check("verify recounted both closed proposals", summary["closed_proposals"] >= 2, got.stdout)

    # ---- a missing document
    discussion = db.discussions.find_one()
    db.discussions.delete_one({"_id": discussion["_id"]})
    expect_failure("verify names the collection a document is missing from", verify,
                   "collection discussions: 0 documents, the backup recorded 1")
    db.discussions.insert_one(discussion)

    # The single-choice proposal: bob voted twice, his later vote counts.
    single = db.proposals.find_one({"status": "closed", "voting_type": "single-choice"})
    pid = single["_id"]
    votes = list(db.votes.find({"proposal_id": pid, "status": "valid"}))
    by_palm: dict[str, list[dict]] = {}
    for vote in votes:
        by_palm.setdefault(vote["palm_id"], []).append(vote)
    twice = next(p for p, vs in by_palm.items() if len(vs) == 2)
    older, newer = sorted(by_palm[twice], key=lambda v: (v["timestamp"], v["_id"]))
    slot = "p" + twice.replace("-", "")
    check("the seed has a superseded vote", single["ballots"][slot]["vote"] == newer["_id"])

    # ---- a tally that disagrees with its votes
    db.proposals.update_one({"_id": pid}, {"$inc": {"tally.1": 1.0}})
    expect_failure("verify names the proposal whose tally disagrees with its votes", verify,
                   f"proposal {pid}: tally of choice 1 is")
    db.proposals.update_one({"_id": pid}, {"$inc": {"tally.1": -1.0}})

    # ---- a counted vote that is gone
    db.votes.delete_one({"_id": newer["_id"]})
    expect_failure("verify names the proposal and the collection when a counted vote is gone", verify,
                   f"proposal {pid}: ballot {slot} counts vote {newer['_id']}, which is missing from votes",
                   "collection votes:")
    db.votes.insert_one(newer)

    # ---- a ballot that keeps the superseded vote (tally consistent with it)
    def choice_of(vote: dict) -> int:
        return vote["allocation"].index(max(vote["allocation"])) + 1

    ballot = single["ballots"][slot]
    db.proposals.update_one({"_id": pid}, {
        "$set": {f"ballots.{slot}.vote": older["_id"], f"ballots.{slot}.ts": older["timestamp"]},
        "$inc": {f"tally.{choice_of(newer)}": -1.0, f"tally.{choice_of(older)}": 1.0},
    })
    expect_failure("verify applies supersession: the later signed vote must be the counted one", verify,
                   f"proposal {pid}: PalmID {twice} is counted with vote {older['_id']} "
                   f"but its later vote {newer['_id']} supersedes it")
    db.proposals.update_one({"_id": pid}, {
        "$set": {f"ballots.{slot}": ballot},
        "$inc": {f"tally.{choice_of(newer)}": 1.0, f"tally.{choice_of(older)}": -1.0},
    })

    # ---- a valid vote left uncounted (ballot and its share of the tally gone)
    # (a whole-document replace: the stand-in ignores $unset of a nested path)
    uncounted = db.proposals.find_one({"_id": pid})
    del uncounted["ballots"][slot]
    db.proposals.replace_one({"_id": pid}, uncounted)
    db.proposals.update_one({"_id": pid}, {
        "$inc": {f"tally.{choice_of(newer)}": -1.0, "voters": -1, "total_power": -1.0},
    })
    expect_failure("verify names the proposal that leaves a valid vote uncounted", verify,
                   f"proposal {pid}: valid vote {newer['_id']} of PalmID {twice} is not counted")
    db.proposals.update_one({"_id": pid}, {
        "$set": {f"ballots.{slot}": ballot},
        "$inc": {f"tally.{choice_of(newer)}": 1.0, "voters": 1, "total_power": 1.0},
    })

    # ---- voting power: a counted vote's power changed
    weighted = db.proposals.find_one({"status": "closed", "voting_type": "weighted"})
    wvote = db.votes.find_one({"_id": next(iter(weighted["ballots"].values()))["vote"]})
    db.votes.update_one({"_id": wvote["_id"]}, {"$set": {"voting_power": wvote["voting_power"] + 2}})
    expect_failure("verify recounts voting power", verify,
                   f"proposal {weighted['_id']}: total power")
    db.votes.update_one({"_id": wvote["_id"]}, {"$set": {"voting_power": wvote["voting_power"]}})

    got = run(*verify)
    check("verify passes again once every mutation is undone", got.returncode == 0, got.stderr)

    # ---- record (last: it adds a document to `backups`)
    got = run("record", "--uri", args.uri, "--db", args.db, "--manifest", manifest)
    check("record runs", got.returncode == 0, got.stderr)
    record = db.backups.find_one({"_id": key})
    shape_ok = (
        record is not None and record["status"] == "ok" and record["s3_key"] == key
        and isinstance(record["finished_at"], dt.datetime)
        and isinstance(record["started_at"], dt.datetime)
        and record["size_bytes"] == os.path.getsize(archive)
        and record["counts"] == written["counts"]
    )
    check("record writes {_id, status ok, started_at, finished_at, size_bytes, s3_key, counts}",
          shape_ok, str(record))
    got = run("record", "--uri", args.uri, "--db", args.db, "--manifest", manifest)
    check("a retried record replaces its own document",
          got.returncode == 0 and db.backups.count_documents({"_id": key}) == 1, got.stderr)

    print(f"verify_test: {len(PASSED)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
