#!/usr/bin/env python3
"""The MongoDB side of Palm's backups: what a dump holds, and whether a
restore holds it too.

Subcommands (each prints one line of JSON or the problems it found; --uri
defaults to $MONGO_URI, which keeps the password off the command line):

  oplog-end ARCHIVE
      The timestamp of the last oplog entry in a `mongodump --archive
      [--gzip] --oplog` archive: the point in time a restore of that archive
      reproduces (mongorestore --oplogReplay applies every entry up to it).
  manifest --uri U --db D --archive A --key K --started-at T --out M.json
      Counts every collection of D *at the archive's point in time* (a
      snapshot read at the oplog end, so the counts match what the archive
      restores, even though writes went on during the dump) and writes the
      manifest: the backup record without `finished_at`.
  record --uri U --db D --manifest M.json
      Writes the manifest into D.backups as the backup record
      {_id: key, status: "ok", started_at, finished_at, size_bytes, s3_key,
      counts}, the document palmplatformmetrics exports as
      palm_platform_backup_last_success_timestamp_seconds.
  ttl-monitor on|off --uri U
      Resumes or pauses TTL deletions on the target of a restore: restored
      nonces and processed-message records past their TTL would otherwise
      vanish between the restore and the count check.
  verify --uri U --db D --manifest M.json [--close-race-secs S]
      Checks a restored database: every collection's count equals the
      manifest's, and every closed proposal's stored tally equals a recount
      of its stored votes under palmdao's rule (services/palmdao/src/tally.rs).
      Exit 0 when intact; 1 with one line per problem, each naming the
      collection or the proposal.

Archive format: docs of mongo-tools (`archive` package): a magic number, a
header document, collection metadata documents, a terminator, then
namespace segments (a header {db, collection, EOF}, BSON documents, a
terminator). With --gzip the whole stream is gzip-compressed. The oplog
travels as the namespace with collection "oplog" (db "").
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import math
import os
import struct
import sys
from typing import BinaryIO, Iterator

import bson
from bson import Timestamp
from pymongo import MongoClient

MAGIC = 0x8199E26D
TERMINATOR = b"\xff\xff\xff\xff"
BACKUPS = "backups"
PROPOSALS = "proposals"
VOTES = "votes"


class ArchiveError(Exception):
    """The file is not a mongodump archive this tool understands."""


# ---------------------------------------------------------------- archive


def _open_archive(path: str) -> BinaryIO:
    with open(path, "rb") as probe:
        head = probe.read(2)
    if head == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ArchiveError(f"truncated archive: wanted {size} bytes, got {len(data)}")
    return data


def _read_block(stream: BinaryIO) -> bytes | None:
    """One BSON document's bytes, or None at a terminator."""
    prefix = _read_exact(stream, 4)
    if prefix == TERMINATOR:
        return None
    (length,) = struct.unpack("<i", prefix)
    if length < 5:
        raise ArchiveError(f"bad BSON length {length}")
    return prefix + _read_exact(stream, length - 4)


def archive_namespaces(path: str) -> Iterator[tuple[str, str, bytes]]:
    """Yields (db, collection, raw document) for every document in the
    archive, in archive order."""
    with _open_archive(path) as stream:
        (magic,) = struct.unpack("<I", _read_exact(stream, 4))
        if magic != MAGIC:
            raise ArchiveError(f"not a mongodump archive (magic {magic:#x})")
        if _read_block(stream) is None:
            raise ArchiveError("archive has no header")
        while _read_block(stream) is not None:  # collection metadata
            pass
        while True:
            prefix = stream.read(4)
            if not prefix:
                return
            stream_rest = _read_exact(stream, struct.unpack("<i", prefix)[0] - 4)
            header = bson.decode(prefix + stream_rest)
            db, coll = header.get("db", ""), header.get("collection", "")
            if header.get("EOF"):
                if _read_block(stream) is not None:
                    raise ArchiveError(f"no terminator after the end of {db}.{coll}")
                continue
            while (raw := _read_block(stream)) is not None:
                yield db, coll, raw


def oplog_end(path: str) -> Timestamp:
    """The newest `ts` in the archive's oplog namespace."""
    newest: Timestamp | None = None
    for db, coll, raw in archive_namespaces(path):
        if (coll == "oplog" and db in ("", "local")) or (db == "local" and coll == "oplog.rs"):
            ts = bson.decode(raw).get("ts")
            if isinstance(ts, Timestamp) and (newest is None or ts > newest):
                newest = ts
    if newest is None:
        raise ArchiveError(f"{path} holds no oplog entries: was it dumped with --oplog?")
    return newest


def _ts_text(ts: Timestamp) -> str:
    return f"{ts.time}:{ts.inc}"


def _parse_ts(text: str) -> Timestamp:
    seconds, _, inc = text.partition(":")
    return Timestamp(int(seconds), int(inc or 0))


# ---------------------------------------------------------------- counts


def collections_of(db) -> list[str]:
    names = db.list_collection_names(filter={"type": "collection"})
    return sorted(n for n in names if not n.startswith("system."))


def counts_at(db, at: Timestamp | None) -> dict[str, int]:
    """Documents per collection; with `at`, as of that cluster time (a
    snapshot read, within the server's minSnapshotHistoryWindowInSeconds)."""
    counts = {}
    for name in collections_of(db):
        command = {"aggregate": name, "pipeline": [{"$count": "n"}], "cursor": {}}
        if at is not None:
            command["readConcern"] = {"level": "snapshot", "atClusterTime": at}
        batch = db.command(command)["cursor"]["firstBatch"]
        counts[name] = int(batch[0]["n"]) if batch else 0
    return counts


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------- tally


def ballot_slot(palm_id: str) -> str:
    """palmdao's key of a PalmID in a proposal's `ballots` (tally.rs)."""
    return "p" + palm_id.replace("-", "")


def _supersession_key(vote: dict) -> tuple[int, str]:
    # tally.rs Ballot::supersedes: later signed timestamp, then vote id.
    return (int(vote.get("timestamp") or 0), str(vote["_id"]))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _utc(value) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def check_proposal(proposal: dict, votes: list[dict], race: dt.timedelta) -> list[str]:
    """Recounts one closed proposal from its stored votes.

    palmdao's rule (tally.rs, scheduler.rs): each PalmID counts with one
    ballot, its valid vote with the greatest (signed timestamp, vote id);
    the tally is the sum of those votes' allocations, `voters` their number,
    `total_power` the sum of their voting power; a vote validated after the
    proposal closed is not counted. Which side of the close a vote decided
    within `race` of `closed_at` fell on is only known from the ballot the
    proposal kept, so for those the stored ballot decides.
    """
    pid = proposal["_id"]
    problems: list[str] = []
    closed_at = _utc(proposal.get("closed_at"))
    ballots = proposal.get("ballots") or {}
    by_id = {v["_id"]: v for v in votes}
    valid_by_palm: dict[str, list[dict]] = {}
    for vote in votes:
        if vote.get("status") == "valid":
            valid_by_palm.setdefault(str(vote.get("palm_id")), []).append(vote)

    counted: list[dict] = []
    for slot, ballot in ballots.items():
        vote_id = ballot.get("vote") if isinstance(ballot, dict) else None
        vote = by_id.get(vote_id)
        if vote is None:
            problems.append(
                f"proposal {pid}: ballot {slot} counts vote {vote_id}, which is missing from {VOTES}"
            )
            continue
        if vote.get("status") != "valid" or ballot_slot(str(vote.get("palm_id"))) != slot:
            problems.append(
                f"proposal {pid}: ballot {slot} counts vote {vote_id}, which is "
                f"{vote.get('status')} and by PalmID {vote.get('palm_id')}"
            )
            continue
        counted.append(vote)

    for palm, candidates in sorted(valid_by_palm.items()):
        slot = ballot_slot(palm)
        decided = [(v, _utc(v.get("decided_at"))) for v in candidates]
        if closed_at is None:
            certain = [v for v, _ in decided]
            late: list[dict] = []
        else:
            certain = [v for v, at in decided if at is None or at < closed_at - race]
            late = [v for v, at in decided if at is not None and at > closed_at + race]
        ballot_vote = by_id.get((ballots.get(slot) or {}).get("vote")) if slot in ballots else None
        if ballot_vote is None or ballot_vote.get("status") != "valid":
            if slot not in ballots and certain:
                newest = max(certain, key=_supersession_key)
                problems.append(
                    f"proposal {pid}: valid vote {newest['_id']} of PalmID {palm} is not counted"
                )
            continue
        if any(v["_id"] == ballot_vote["_id"] for v in late):
            problems.append(
                f"proposal {pid}: ballot of PalmID {palm} counts vote {ballot_vote['_id']}, "
                f"validated after the proposal closed"
            )
        if certain:
            newest = max(certain, key=_supersession_key)
            if _supersession_key(newest) > _supersession_key(ballot_vote):
                problems.append(
                    f"proposal {pid}: PalmID {palm} is counted with vote {ballot_vote['_id']} "
                    f"but its later vote {newest['_id']} supersedes it"
                )

    choices = len(proposal.get("choices") or [])
    recount = [0.0] * choices
    total_power = 0.0
    for vote in counted:
        allocation = vote.get("allocation") or []
        for index in range(choices):
            recount[index] += float(allocation[index]) if index < len(allocation) else 0.0
        total_power += float(vote.get("voting_power") or 0.0)
    stored = proposal.get("tally") or {}
    for index in range(choices):
        have = float(stored.get(str(index + 1), 0.0) or 0.0)
        if not _close(have, recount[index]):
            problems.append(
                f"proposal {pid}: tally of choice {index + 1} is {have:g} "
                f"but its votes recount to {recount[index]:g}"
            )
    if int(proposal.get("voters") or 0) != len(counted):
        problems.append(
            f"proposal {pid}: {proposal.get('voters')} voters stored "
            f"but {len(counted)} counted votes found"
        )
    if not _close(float(proposal.get("total_power") or 0.0), total_power):
        problems.append(
            f"proposal {pid}: total power {float(proposal.get('total_power') or 0.0):g} stored "
            f"but its votes recount to {total_power:g}"
        )
    return problems


def verify(db, manifest: dict, race: dt.timedelta) -> tuple[list[str], dict]:
    problems: list[str] = []
    expected: dict[str, int] = manifest.get("counts") or {}
    present = set(collections_of(db))
    for name, want in sorted(expected.items()):
        if name not in present:
            problems.append(f"collection {name}: missing (the backup recorded {want} documents)")
            continue
        have = db[name].count_documents({})
        if have != want:
            problems.append(
                f"collection {name}: {have} documents, the backup recorded {want}"
            )
    closed = 0
    votes_seen = 0
    for proposal in db[PROPOSALS].find({"status": "closed"}):
        votes = list(db[VOTES].find({"proposal_id": proposal["_id"]}))
        votes_seen += len(votes)
        problems.extend(check_proposal(proposal, votes, race))
        closed += 1
    summary = {
        "collections": len(expected),
        "documents": sum(expected.values()),
        "closed_proposals": closed,
        "votes_recounted": votes_seen,
        "extra_collections": sorted(present - set(expected)),
    }
    return problems, summary


# ---------------------------------------------------------------- commands


def _client(uri: str) -> MongoClient:
    return MongoClient(uri, serverSelectionTimeoutMS=20000, tz_aware=True)


def cmd_oplog_end(args) -> int:
    print(_ts_text(oplog_end(args.archive)))
    return 0


def cmd_manifest(args) -> int:
    at = _parse_ts(args.at) if args.at else oplog_end(args.archive)
    db = _client(args.uri)[args.db]
    manifest = {
        "_id": args.key,
        "status": "ok",
        "s3_key": args.key,
        "started_at": args.started_at,
        "size_bytes": os.path.getsize(args.archive),
        "oplog_end": _ts_text(at),
        "counts": counts_at(db, at),
    }
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(manifest, out, indent=1, sort_keys=True)
        out.write("\n")
    print(json.dumps({"manifest": args.out, "oplog_end": manifest["oplog_end"],
                      "documents": sum(manifest["counts"].values())}))
    return 0


def cmd_record(args) -> int:
    with open(args.manifest, encoding="utf-8") as f:
        manifest = json.load(f)
    finished = dt.datetime.now(dt.timezone.utc)
    record = {
        "_id": manifest["_id"],
        "status": "ok",
        "started_at": _parse_iso(manifest["started_at"]),
        "finished_at": finished,
        "size_bytes": int(manifest["size_bytes"]),
        "s3_key": manifest["s3_key"],
        "oplog_end": manifest["oplog_end"],  # SECONDS:INC, as mongorestore --oplogLimit takes it
        "counts": manifest["counts"],
    }
    # A retried job run replaces its own record instead of failing on it.
    _client(args.uri)[args.db][BACKUPS].replace_one({"_id": record["_id"]}, record, upsert=True)
    print(json.dumps({"recorded": record["_id"], "finished_at": _iso(finished)}))
    return 0


def cmd_verify(args) -> int:
    with open(args.manifest, encoding="utf-8") as f:
        manifest = json.load(f)
    db = _client(args.uri)[args.db]
    problems, summary = verify(db, manifest, dt.timedelta(seconds=args.close_race_secs))
    for problem in problems:
        print(f"verify: {problem}", file=sys.stderr)
    status = "failed" if problems else "ok"
    print(json.dumps({"verify": status, "backup": manifest.get("_id"),
                      "problems": len(problems), **summary}))
    return 1 if problems else 0


def cmd_ttl_monitor(args) -> int:
    enabled = args.state == "on"
    _client(args.uri).admin.command({"setParameter": 1, "ttlMonitorEnabled": enabled})
    print(json.dumps({"ttl_monitor": args.state}))
    return 0


# The URI carries the password: taken from MONGO_URI rather than the command
# line, where every process on the host could read it.
URI = {"default": os.environ.get("MONGO_URI"), "required": not os.environ.get("MONGO_URI"),
       "help": "MongoDB URI (default: $MONGO_URI)"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("oplog-end", help="the archive's point in time")
    p.add_argument("archive")
    p.set_defaults(run=cmd_oplog_end)

    p = sub.add_parser("manifest", help="counts at the archive's point in time")
    p.add_argument("--uri", **URI)
    p.add_argument("--db", required=True)
    p.add_argument("--archive", required=True)
    p.add_argument("--key", required=True, help="the dated S3 key: the record's _id")
    p.add_argument("--started-at", required=True, help="ISO 8601 UTC")
    p.add_argument("--out", required=True)
    p.add_argument("--at", help="SECONDS[:INC] instead of the archive's oplog end")
    p.set_defaults(run=cmd_manifest)

    p = sub.add_parser("record", help="write the backup record")
    p.add_argument("--uri", **URI)
    p.add_argument("--db", required=True)
    p.add_argument("--manifest", required=True)
    p.set_defaults(run=cmd_record)

    p = sub.add_parser("verify", help="check a restored database")
    p.add_argument("--uri", **URI)
    p.add_argument("--db", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--close-race-secs", type=float, default=2.0,
                   help="votes validated this close to the close may fall on either side (default 2)")
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("ttl-monitor", help="pause or resume TTL deletions while a restore is checked")
    p.add_argument("--uri", **URI)
    p.add_argument("state", choices=["on", "off"])
    p.set_defaults(run=cmd_ttl_monitor)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ArchiveError as error:
        print(f"palmbackup: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
