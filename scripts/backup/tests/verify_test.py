#!/usr/bin/env python3
"""Tests of scripts/backup/palmbackup.py against a database that palmdao and
palmvalidator filled through the API (scripts/backup/seed.sh):

- the archive reader finds the oplog's end in a mongodump archive (plain and
  gzip), and refuses a file that is not one;
- `manifest` counts every collection and `record` writes the backup record
  in the shape docs/metrics.md gives;
- `verify` passes on the intact data (which includes a superseded vote, a
  weighted vote and a rejected one; ballots are documents of `ballots`,
  frozen by the close, ADR 0029) and fails, naming the collection, the
  proposal and the ballot, for: a missing document; a stored tally, voters
  or total power that disagree with a recount of the frozen ballots; a tally
  in the old map shape; a frozen ballot whose vote is gone, not valid, another
  PalmID's, on another proposal, validated after the close or superseded
  by a later one; a frozen ballot whose allocation, power or timestamp
  differs from its vote's; a valid vote left uncounted (ballot unfrozen or
  gone). It accepts an unfrozen ballot placed during the close.

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
import uuid

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


def expect_failure(name: str, args: list[str], *needles: str, absent: tuple[str, ...] = ()) -> None:
    """verify exits 1 naming every needle, and none of `absent` (the damage
    has one cause)."""
    result = run(*args)
    missing = [n for n in needles if n not in result.stderr]
    extra = [n for n in absent if n in result.stderr]
    check(name, result.returncode == 1 and not missing and not extra,
          f"exit {result.returncode}, missing {missing}, unexpected {extra} in:\n{result.stderr}{result.stdout}")


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
          live.get("votes", 0) >= 8 and live.get("ballots", 0) >= 6
          and db.proposals.count_documents({"status": "closed"}) >= 2,
          str(live))

    # Whatever happens below, the seeded documents are put back as they were.
    saved = {name: list(db[name].find()) for name in ("ballots", "discussions", "proposals", "votes")}
    try:
        return mutations(args, db, manifest, written, archive, key)
    finally:
        for name, documents in saved.items():
            db[name].delete_many({})
            db[name].insert_many(documents)


COLLECTIONS = ("ballots", "proposals", "votes")


def restore(db, snapshot: dict[str, list[dict]]) -> None:
    for name, documents in snapshot.items():
        db[name].delete_many({})
        if documents:
            db[name].insert_many(documents)


def mutations(args, db, manifest: str, written: dict, archive: str, key: str) -> int:
    # ---- verify on intact data
    verify = ["verify", "--uri", args.uri, "--db", args.db, "--manifest", manifest]
    got = run(*verify)
    check("verify passes on the intact database", got.returncode == 0, got.stderr + got.stdout)
    summary = json.loads(got.stdout)
    check("verify recounted both closed proposals from their frozen ballots",
          summary["closed_proposals"] >= 2 and summary["frozen_ballots_recounted"] >= 6, got.stdout)

    def planted(name: str, damage, *needles: str, absent: tuple[str, ...] = ()) -> None:
        """Plants one kind of damage, expects verify to name it, undoes it."""
        snapshot = {c: list(db[c].find()) for c in COLLECTIONS}
        try:
            damage()
            expect_failure(name, verify, *needles, absent=absent)
        finally:
            restore(db, snapshot)

    # ---- a missing document
    discussion = db.discussions.find_one()
    db.discussions.delete_one({"_id": discussion["_id"]})
    expect_failure("verify names the collection a document is missing from", verify,
                   "collection discussions: 0 documents, the backup recorded 1")
    db.discussions.insert_one(discussion)

    # The single-choice proposal: bob voted twice, his later vote counts.
    single = db.proposals.find_one({"status": "closed", "voting_type": "single-choice"})
    weighted = db.proposals.find_one({"status": "closed", "voting_type": "weighted"})
    pid = single["_id"]
    votes = list(db.votes.find({"proposal_id": pid, "status": "valid"}))
    by_palm: dict[str, list[dict]] = {}
    for vote in votes:
        by_palm.setdefault(vote["palm_id"], []).append(vote)
    twice = next(p for p, vs in by_palm.items() if len(vs) == 2)
    other = next(p for p, vs in by_palm.items() if len(vs) == 1)
    older, newer = sorted(by_palm[twice], key=lambda v: (v["timestamp"], v["_id"]))
    bid = f"{pid}:{twice}"
    ballot = db.ballots.find_one({"_id": bid})
    check("the seed has a superseded vote and a frozen ballot that counts the later one",
          ballot is not None and ballot["vote_id"] == newer["_id"] and ballot.get("closed") is True
          and ballot["allocation"] == newer["allocation"] and ballot["timestamp"] == newer["timestamp"],
          str(ballot))
    check("the seed's closed proposals store their tally as an array, choice 1 first",
          isinstance(single.get("tally"), list) and len(single["tally"]) == len(single["choices"])
          and "ballots" not in single, str(single))
    check("every ballot of the closed proposals is frozen",
          db.ballots.count_documents({"proposal_id": {"$in": [pid, weighted["_id"]]}})
          == db.ballots.count_documents({"proposal_id": {"$in": [pid, weighted["_id"]]}, "closed": True})
          >= 6)

    def shift_tally(proposal_id: str, minus: list[float], plus: list[float], **also) -> None:
        """Moves a stored tally by a ballot's change (keeps it consistent with
        the damaged ballots, so the failure has one cause); `also`: $inc."""
        doc = db.proposals.find_one({"_id": proposal_id})
        tally = list(doc["tally"])
        for index in range(len(tally)):
            tally[index] += (plus[index] if index < len(plus) else 0.0) - (minus[index] if index < len(minus) else 0.0)
        update = {"$set": {"tally": tally}}
        if also:
            update["$inc"] = also
        db.proposals.update_one({"_id": proposal_id}, update)

    def set_ballot(ballot_id: str, **fields) -> None:
        db.ballots.update_one({"_id": ballot_id}, {"$set": fields})

    def unfreeze(ballot_id: str) -> None:
        # (a whole-document replace: the stand-in ignores some $unset paths)
        doc = db.ballots.find_one({"_id": ballot_id})
        doc.pop("closed", None)
        db.ballots.replace_one({"_id": ballot_id}, doc)

    tally_msg = f"proposal {pid}: tally of choice"

    # ---- the stored final tally against the recount of the frozen ballots
    planted("verify names the proposal whose tally disagrees with its frozen ballots",
            lambda: shift_tally(pid, [], [1.0]),
            f"proposal {pid}: tally of choice 1 is {single['tally'][0] + 1:g} "
            f"but its frozen ballots recount to {single['tally'][0]:g}")
    planted("verify recounts the voters",
            lambda: db.proposals.update_one({"_id": pid}, {"$inc": {"voters": 1}}),
            f"proposal {pid}: {single['voters'] + 1} voters stored but {single['voters']} "
            f"frozen ballots found in ballots")
    planted("verify refuses a tally in the old shape (a map per choice)",
            lambda: db.proposals.update_one({"_id": pid}, {"$set": {
                "tally": {str(i + 1): t for i, t in enumerate(single["tally"])}}}),
            f"proposal {pid}: stored tally is dict, not an array")

    # ---- frozen ballots against the votes
    planted("verify names the proposal, the ballot and the collection when a counted vote is gone",
            lambda: db.votes.delete_one({"_id": newer["_id"]}),
            f"proposal {pid}: ballot {bid} in ballots counts vote {newer['_id']}, which is missing from votes",
            "collection votes:")

    def keep_superseded() -> None:
        set_ballot(bid, vote_id=older["_id"], timestamp=older["timestamp"],
                   allocation=older["allocation"], power=older["voting_power"])
        shift_tally(pid, newer["allocation"], older["allocation"])

    planted("verify applies supersession: the later signed vote must be the counted one",
            keep_superseded,
            f"proposal {pid}: PalmID {twice} is counted with vote {older['_id']} "
            f"but its later vote {newer['_id']} supersedes it", absent=(tally_msg, "holds"))

    def allocation_differs() -> None:
        set_ballot(bid, allocation=older["allocation"])
        shift_tally(pid, newer["allocation"], older["allocation"])

    def shown(values) -> str:
        return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"

    planted("verify names a frozen ballot whose allocation differs from its vote's",
            allocation_differs,
            f"proposal {pid}: ballot {bid} in ballots holds allocation {shown(older['allocation'])} "
            f"but vote {newer['_id']} in votes has {shown(newer['allocation'])}", absent=(tally_msg,))
    planted("verify names a frozen ballot whose timestamp differs from its vote's",
            lambda: set_ballot(bid, timestamp=newer["timestamp"] - 5),
            f"proposal {pid}: ballot {bid} in ballots holds timestamp {newer['timestamp'] - 5} "
            f"but vote {newer['_id']} in votes was signed at {newer['timestamp']}")

    other_vote = by_palm[other][0]
    planted("verify names a frozen ballot that counts another PalmID's vote",
            lambda: set_ballot(bid, vote_id=other_vote["_id"]),
            f"proposal {pid}: ballot {bid} in ballots counts vote {other_vote['_id']}, "
            f"which is valid, by PalmID {other} on proposal {pid}")
    elsewhere = db.votes.find_one({"proposal_id": weighted["_id"], "palm_id": twice, "status": "valid"})
    planted("verify names a frozen ballot that counts a vote on another proposal",
            lambda: set_ballot(bid, vote_id=elsewhere["_id"]),
            f"proposal {pid}: ballot {bid} in ballots counts vote {elsewhere['_id']}, "
            f"which is valid, by PalmID {twice} on proposal {weighted['_id']}")
    planted("verify names a frozen ballot whose vote is not valid",
            lambda: db.votes.update_one({"_id": newer["_id"]}, {"$set": {"status": "rejected"}}),
            f"proposal {pid}: ballot {bid} in ballots counts vote {newer['_id']}, which is rejected")
    planted("verify names a frozen ballot whose vote was validated after the close",
            lambda: db.votes.update_one({"_id": newer["_id"]}, {"$set": {
                "decided_at": single["closed_at"] + dt.timedelta(seconds=30)}}),
            f"proposal {pid}: ballot {bid} in ballots counts vote {newer['_id']}, "
            f"validated after the proposal closed")

    # ---- a valid vote left uncounted (its share of the tally gone too)
    def uncounted(drop) -> None:
        drop()
        shift_tally(pid, newer["allocation"], [], voters=-1, total_power=-newer["voting_power"])

    planted("verify names a valid vote whose ballot was not frozen by the close",
            lambda: uncounted(lambda: unfreeze(bid)),
            f"proposal {pid}: valid vote {newer['_id']} of PalmID {twice} is not counted "
            f"(its ballot is not frozen)", absent=(tally_msg,))
    planted("verify names a valid vote that has no ballot",
            lambda: uncounted(lambda: db.ballots.delete_one({"_id": bid})),
            f"proposal {pid}: valid vote {newer['_id']} of PalmID {twice} is not counted "
            f"(no ballot in ballots)", "collection ballots:")

    # ---- voting power: a counted vote's power changed
    wballot = db.ballots.find_one({"proposal_id": weighted["_id"], "closed": True})
    wvote = db.votes.find_one({"_id": wballot["vote_id"]})
    planted("verify checks each frozen ballot's power against its vote's voting power",
            lambda: db.votes.update_one({"_id": wvote["_id"]}, {"$set": {"voting_power": wvote["voting_power"] + 2}}),
            f"proposal {weighted['_id']}: ballot {wballot['_id']} in ballots holds power "
            f"{wballot['power']:g} but vote {wvote['_id']} in votes has voting power {wvote['voting_power'] + 2:g}")
    planted("verify recounts total power from the frozen ballots",
            lambda: set_ballot(wballot["_id"], power=wballot["power"] + 2),
            f"proposal {weighted['_id']}: total power {weighted['total_power']:g} stored "
            f"but its frozen ballots recount to {weighted['total_power'] + 2:g}",
            f"proposal {weighted['_id']}: ballot {wballot['_id']} in ballots holds power")

    # ---- what the close leaves uncounted by design: a ballot placed while
    # the proposal closed (unfrozen), its vote decided within the race
    # window of closed_at. Counts grow by one vote and one ballot.
    late_manifest = os.path.join(args.work, "manifest-late.json")
    counts = dict(written["counts"])
    counts["votes"] += 1
    counts["ballots"] += 1
    with open(late_manifest, "w", encoding="utf-8") as f:
        json.dump({**written, "counts": counts}, f)
    eve = str(uuid.uuid4())
    late_vote = {**newer, "_id": str(uuid.uuid4()), "palm_id": eve, "digest": uuid.uuid4().hex,
                 "decided_at": single["closed_at"] - dt.timedelta(seconds=1)}
    late_ballot = {k: v for k, v in ballot.items() if k != "closed"}
    late_ballot.update(_id=f"{pid}:{eve}", palm_id=eve, vote_id=late_vote["_id"],
                       counted_at=single["closed_at"] - dt.timedelta(seconds=1))
    snapshot = {c: list(db[c].find()) for c in COLLECTIONS}
    try:
        db.votes.insert_one(late_vote)
        db.ballots.insert_one(late_ballot)
        got = run("verify", "--uri", args.uri, "--db", args.db, "--manifest", late_manifest)
        check("verify accepts a ballot placed during the close (unfrozen, not counted)",
              got.returncode == 0, got.stderr + got.stdout)
        db.votes.update_one({"_id": late_vote["_id"]}, {"$set": {
            "decided_at": single["closed_at"] - dt.timedelta(seconds=30)}})
        expect_failure("verify refuses an unfrozen ballot whose vote was decided well before the close",
                       ["verify", "--uri", args.uri, "--db", args.db, "--manifest", late_manifest],
                       f"proposal {pid}: valid vote {late_vote['_id']} of PalmID {eve} is not counted "
                       f"(its ballot is not frozen)")
    finally:
        restore(db, snapshot)

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
