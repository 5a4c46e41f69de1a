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
      manifest's; every closed proposal's stored tally (per choice, voters,
      total power) equals a recount of its frozen ballots (the `ballots`
      collection), and each frozen ballot agrees with the vote it counts
      under palmdao's rule (services/palmdao/src/store/ballots.rs, ADR 0029).
      Exit 0 when intact; 1 with one line per problem, each naming the
      collection, the proposal and the ballot.

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
BALLOTS = "ballots"


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


def ballot_id(proposal_id: str, palm_id: str) -> str:
    """palmdao's `_id` of a PalmID's ballot on a proposal (tally.rs)."""
    return f"{proposal_id}:{palm_id}"


def _supersession_key(timestamp, vote_id) -> tuple[int, str]:
    # tally.rs Ballot::supersedes: later signed timestamp, then vote id.
    return (int(timestamp or 0), str(vote_id))


def _vote_key(vote: dict) -> tuple[int, str]:
    return _supersession_key(vote.get("timestamp"), vote["_id"])


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _numbers(values) -> list[float] | None:
    if not isinstance(values, list):
        return None
    return [_number(v) for v in values]


def _same_numbers(a: list[float] | None, b: list[float] | None) -> bool:
    return a is not None and b is not None and len(a) == len(b) and all(map(_close, a, b))


def _shown(values: list[float] | None) -> str:
    return "none" if values is None else "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _utc(value) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def is_frozen(ballot: dict) -> bool:
    """Frozen by the close (tally.rs FROZEN_FIELD): the only ballots the
    final tally counts."""
    return ballot.get("closed") is True


def check_proposal(proposal: dict, ballots: list[dict], votes: dict[str, dict],
                   race: dt.timedelta) -> list[str]:
    """Checks one closed proposal against its ballots and the votes.

    `ballots`: the proposal's documents of `ballots`; `votes`: every vote of
    the proposal by `_id`, plus any other vote a ballot names.

    palmdao's rule (ADR 0029; store/ballots.rs, jobs/scheduler.rs): each PalmID has one
    ballot, its valid vote with the greatest (signed timestamp, vote id);
    closing freezes the ballots (`closed: true`) and stores the recount of
    the frozen ones: `tally` the per-choice sum of their allocations (choice
    1 first), `voters` their number, `total_power` the sum of their power.
    A ballot placed while the proposal closed stays unfrozen and uncounted
    (a vote decided after the close). Which side of the close a vote decided
    within `race` of `closed_at` fell on is only known from the ballots the
    close froze, so for those the frozen ballots decide: `race` covers the
    replicas' clocks and the close itself (freeze, recount, then `closed_at`).
    """
    pid = proposal["_id"]
    problems: list[str] = []
    closed_at = _utc(proposal.get("closed_at"))
    frozen = [b for b in ballots if is_frozen(b)]
    frozen_by_palm: dict[str, list[dict]] = {}
    for ballot in frozen:
        frozen_by_palm.setdefault(str(ballot.get("palm_id")), []).append(ballot)
    unfrozen_palms = {str(b.get("palm_id")) for b in ballots if not is_frozen(b)}

    def decided(vote: dict) -> dt.datetime | None:
        return _utc(vote.get("decided_at"))

    def certain(vote: dict) -> bool:  # decided before the close, whatever the clocks
        at = decided(vote)
        return closed_at is None or at is None or at < closed_at - race

    def late(vote: dict) -> bool:  # decided after the close, whatever the clocks
        at = decided(vote)
        return closed_at is not None and at is not None and at > closed_at + race

    valid_by_palm: dict[str, list[dict]] = {}
    for vote in votes.values():
        if vote.get("proposal_id") == pid and vote.get("status") == "valid":
            valid_by_palm.setdefault(str(vote.get("palm_id")), []).append(vote)

    # ---- each frozen ballot against the vote it counts
    for ballot in frozen:
        bid = ballot.get("_id")
        palm = str(ballot.get("palm_id"))
        where = f"proposal {pid}: ballot {bid} in {BALLOTS}"
        if bid != ballot_id(pid, palm):
            problems.append(f"{where} is PalmID {palm}'s, whose ballot id is {ballot_id(pid, palm)}")
        vote_id = ballot.get("vote_id")
        vote = votes.get(vote_id)
        if vote is None:
            problems.append(f"{where} counts vote {vote_id}, which is missing from {VOTES}")
            continue
        if (vote.get("status") != "valid" or str(vote.get("palm_id")) != palm
                or vote.get("proposal_id") != pid):
            problems.append(
                f"{where} counts vote {vote_id}, which is {vote.get('status')}, by PalmID "
                f"{vote.get('palm_id')} on proposal {vote.get('proposal_id')}"
            )
            continue
        held, voted = _numbers(ballot.get("allocation")), _numbers(vote.get("allocation"))
        if not _same_numbers(held, voted):
            problems.append(
                f"{where} holds allocation {_shown(held)} but vote {vote_id} in {VOTES} "
                f"has {_shown(voted)}"
            )
        if not _close(_number(ballot.get("power")), _number(vote.get("voting_power"))):
            problems.append(
                f"{where} holds power {_number(ballot.get('power')):g} but vote {vote_id} "
                f"in {VOTES} has voting power {_number(vote.get('voting_power')):g}"
            )
        if ballot.get("timestamp") != vote.get("timestamp"):
            problems.append(
                f"{where} holds timestamp {ballot.get('timestamp')} but vote {vote_id} "
                f"in {VOTES} was signed at {vote.get('timestamp')}"
            )
        if late(vote):
            problems.append(
                f"{where} counts vote {vote_id}, validated after the proposal closed"
            )
        newer = [v for v in valid_by_palm.get(palm, []) if certain(v)]
        if newer:
            newest = max(newer, key=_vote_key)
            if _vote_key(newest) > _vote_key(vote):
                problems.append(
                    f"proposal {pid}: PalmID {palm} is counted with vote {vote_id} "
                    f"but its later vote {newest['_id']} supersedes it"
                )

    # ---- one counted ballot per PalmID, and none missing
    for palm, held in sorted(frozen_by_palm.items()):
        if len(held) > 1:
            problems.append(
                f"proposal {pid}: PalmID {palm} has {len(held)} frozen ballots in {BALLOTS}: "
                + ", ".join(sorted(str(b.get("_id")) for b in held))
            )
    for palm, candidates in sorted(valid_by_palm.items()):
        decided_before = [v for v in candidates if certain(v)]
        if palm in frozen_by_palm or not decided_before:
            continue
        newest = max(decided_before, key=_vote_key)
        why = "its ballot is not frozen" if palm in unfrozen_palms else f"no ballot in {BALLOTS}"
        problems.append(
            f"proposal {pid}: valid vote {newest['_id']} of PalmID {palm} is not counted ({why})"
        )

    # ---- the stored final tally against a recount of the frozen ballots
    choices = len(proposal.get("choices") or [])
    recount = [0.0] * choices
    total_power = 0.0
    for ballot in frozen:
        allocation = _numbers(ballot.get("allocation")) or []
        for index, power in enumerate(allocation[:choices]):
            recount[index] += power
        total_power += _number(ballot.get("power"))
    stored = _numbers(proposal.get("tally"))
    if stored is None:
        problems.append(
            f"proposal {pid}: stored tally is {type(proposal.get('tally')).__name__}, "
            f"not an array (choice 1 first)"
        )
        stored = []
    elif len(stored) != choices:
        problems.append(f"proposal {pid}: stored tally has {len(stored)} entries for {choices} choices")
    for index in range(choices):
        have = stored[index] if index < len(stored) else 0.0
        if not _close(have, recount[index]):
            problems.append(
                f"proposal {pid}: tally of choice {index + 1} is {have:g} "
                f"but its frozen ballots recount to {recount[index]:g}"
            )
    voters = proposal.get("voters")
    if not isinstance(voters, int) or isinstance(voters, bool) or voters != len(frozen):
        problems.append(
            f"proposal {pid}: {voters} voters stored but {len(frozen)} frozen ballots found in {BALLOTS}"
        )
    if not _close(_number(proposal.get("total_power")), total_power):
        problems.append(
            f"proposal {pid}: total power {_number(proposal.get('total_power')):g} stored "
            f"but its frozen ballots recount to {total_power:g}"
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
    ballots_seen = 0
    for proposal in db[PROPOSALS].find({"status": "closed"}):
        pid = proposal["_id"]
        ballots = list(db[BALLOTS].find({"proposal_id": pid}))
        votes = {v["_id"]: v for v in db[VOTES].find({"proposal_id": pid})}
        votes_seen += len(votes)
        # A ballot may name a vote of another proposal (damage): fetch it, so
        # the message says whose vote it is rather than "missing".
        elsewhere = sorted({b.get("vote_id") for b in ballots} - set(votes) - {None}, key=str)
        if elsewhere:
            votes.update({v["_id"]: v for v in db[VOTES].find({"_id": {"$in": elsewhere}})})
        ballots_seen += sum(1 for b in ballots if is_frozen(b))
        problems.extend(check_proposal(proposal, ballots, votes, race))
        closed += 1
    summary = {
        "collections": len(expected),
        "documents": sum(expected.values()),
        "closed_proposals": closed,
        "frozen_ballots_recounted": ballots_seen,
        "votes_checked": votes_seen,
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
                   help="votes validated this close to closed_at may fall on either side of the freeze (default 2)")
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
