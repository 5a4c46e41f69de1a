"""Launches the nx-27017 MongoDB stand-in for the tests, with ten fixes.

Each is a difference from real MongoDB that Palm's code would trip over (or,
for 10, pay for where MongoDB would not); the workarounds live here, in test
tooling, never in service code.

1. nx-27017 turns simple update operators ($set, $push, $min, ...) into
   SQLite JSON functions, which store BSON dates and sub-documents as
   strings. Every update is routed through neosqlite's Python update
   implementation, which keeps the types. (Its global "force fallback"
   switch would do that too, but it also turns every *query* into a Python
   scan of the whole collection, making each command cost grow with the
   collection; queries keep their SQL translation and indexes.)
2. Date comparisons in queries are wrapped in SQLite's datetime(), which
   truncates to whole seconds, so `{t: {$lt: now}}` misses a `t` earlier in
   the same second. julianday() keeps sub-millisecond precision.
3. A compound index naming `_id` (e.g. `{community_id: 1, _id: -1}`, the
   shape of every "newest first per parent" listing) becomes an SQLite index
   on json_extract(data, '$._id'), but `_id` lives in its own column, so
   every later insert fails with "JSON path error near '_id'". A non-unique
   index only speeds reads up, so the stand-in builds it without `_id`.
4. `$inc` on a dotted path (`{"$inc": {"tally.2": 1}}`) sets a top-level
   key named "tally.2" instead of incrementing inside `tally`.
5. An inclusion projection of a dotted path (`{"ballots.p1": 1}`) returns a
   top-level key named "ballots.p1" instead of the nested field.
6. The database's clock: `$$NOW` is not resolved (it reads as null), and an
   update given as a pipeline (a list of stages) fails. Palm's leases write
   and judge expiry on the server's clock (`$$NOW` in an update pipeline and
   in `$expr`), so the stand-in resolves `$$NOW` to its own clock when a
   command arrives and rewrites the shapes the leases use into classic
   operators: `$expr` comparisons of a field with a value become query
   operators, and `$set` stages whose values are constants, `$add` of
   constants (a date plus milliseconds) or `$add` of a field and a number
   become `$set` / `$inc`. Any other pipeline is refused with an error, so a
   new shape fails loudly instead of silently meaning something else.
7. A filter with a top-level `$or` beside other conditions drops those other
   conditions: `{_id: "p:a", $or: [...]}` matches any document satisfying
   the `$or`, so an update meant for one document changes another (palmdao's
   ballot upsert is of this shape). Such a filter is rewritten to the
   equivalent `{$and: [{<other conditions>}, {$or: [...]}]}`, which the
   stand-in evaluates correctly (an upsert still takes `_id` from it).
8. With queries in SQL (fix 1), `{field: value}` on an array-valued field
   (the audit log's `subjects`) compares the whole array with the value
   and matches nothing, where MongoDB matches arrays that contain it. In
   read commands (find, count, aggregate `$match`) a top-level equality
   with a plain string, number or boolean becomes the equivalent
   `{field: {$in: [value]}}`, which the stand-in evaluates as MongoDB does
   for plain and array fields alike.
9. A pipeline the stand-in runs in Python (any with `$lookup`) starts from
   every document of the collection, and `$lookup` with `localField` /
   `foreignField` reads the whole foreign collection for every aggregate
   (40 ms per call with 2,000 documents), where MongoDB uses indexes. The
   Python pipeline now starts from the documents a leading `$match` selects
   (it is still applied again), and when a lookup's local values are plain
   strings or numbers of a top-level field, the foreign documents are read
   with `{<foreignField>: {$in: [<local values>]}}`: the same matches, on
   the stand-in's indexes.
10. A pipeline with `$lookup` is first tried on the stand-in's two SQL
   tiers, the second of which copies the matched documents into temporary
   tables: 2.4 ms for palmdao's intake lookup (one PalmID and its
   membership by `_id`), four `find_one`s' worth, where MongoDB reads the
   two documents from their `_id` indexes. Such a pipeline now goes
   straight to the Python engine, which with fix 9 reads only the matching
   documents: 0.7 ms, so the benchmark's "votes/s ÷ single-command rate"
   measures Palm's commands, not the stand-in's detour.
"""

import datetime
import inspect
import textwrap

from neosqlite.collection import index_manager, sql_translator_unified
from neosqlite.collection.query_helper import aggregation, update_operations
from neosqlite.collection import query_engine as neo_query_engine
from neosqlite.collection.query_engine import python_aggregation_engine
from neosqlite.collection.query_helper import _sql_updates
from nx_27017 import handler as nx_handler
from nx_27017.nx_27017 import main


def _updates_in_python():
    cls = _sql_updates.SqlUpdatesMixin
    if not hasattr(cls, "_can_use_sql_updates"):
        raise SystemExit("mongo-standin: neosqlite changed; review the update patch")
    cls._can_use_sql_updates = lambda self, update_spec, doc_id, original_doc=None: False


def _lookup_filter(docs_with_context, local_field, foreign_field):
    if "." in local_field:
        return {}
    values = []
    for item in docs_with_context:
        value = item.get("__doc__", {}).get(local_field)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return {}
        values.append(value)
    return {foreign_field: {"$in": values}}


def _leading_match(pipeline):
    first = pipeline[0] if pipeline else {}
    match = first.get("$match") if isinstance(first, dict) else None
    if not isinstance(match, dict) or any(k in ("$expr", "$text", "$where") for k in match):
        return {}
    return match


def _lookup_reads_only_matches():
    module = python_aggregation_engine
    source = textwrap.dedent(inspect.getsource(module.execute_python_aggregation))
    old = "for match_doc in from_collection.find(session=session):"
    new = ("for match_doc in from_collection.find("
           "_lookup_filter(docs_with_context, local_field, foreign_field), session=session):")
    start_old = "docs: list[dict[str, Any]] = list(query_engine.find(session=session))"
    start_new = "docs = list(query_engine.find(_leading_match(pipeline), session=session))"
    if source.count(old) != 1 or source.count(start_old) != 1:
        raise SystemExit("mongo-standin: neosqlite changed; review the $lookup patch")
    source = source.replace(start_old, start_new)
    namespace = {}
    scope = dict(vars(module), _lookup_filter=_lookup_filter, _leading_match=_leading_match)
    exec(compile(source.replace(old, new), module.__file__, "exec"), scope, namespace)
    module.execute_python_aggregation = namespace["execute_python_aggregation"]
    neo_query_engine.execute_python_aggregation = namespace["execute_python_aggregation"]


def _lookups_in_python():
    cls = neo_query_engine.QueryEngine
    original = cls.aggregate_with_constraints

    def aggregate_with_constraints(self, pipeline, batch_size=101, memory_constrained=False, session=None):
        if any(isinstance(stage, dict) and "$lookup" in stage for stage in pipeline):
            return neo_query_engine.execute_python_aggregation(self, pipeline, session)
        return original(self, pipeline, batch_size, memory_constrained, session)

    cls.aggregate_with_constraints = aggregate_with_constraints


def _compare_dates_with_millisecond_precision():
    cls = sql_translator_unified.SQLOperatorTranslator
    source = textwrap.dedent(inspect.getsource(cls.translate_operator))
    patched = source.replace("datetime(", "julianday(")
    if patched == source:
        raise SystemExit("mongo-standin: nx-27017 changed; review the date patch")
    namespace = {}
    exec(compile(patched, sql_translator_unified.__file__, "exec"), vars(sql_translator_unified), namespace)
    cls.translate_operator = namespace["translate_operator"]


def _compound_indexes_without_id():
    cls = index_manager.IndexManager
    original = cls.create_index

    def create_index(self, key, reindex=True, sparse=False, unique=False, *args, **kwargs):
        if (
            isinstance(key, list)
            and len(key) > 1
            and not unique
            and all(isinstance(k, tuple) for k in key)
            and any(k[0] == "_id" for k in key)
        ):
            key = [k for k in key if k[0] != "_id"]
        return original(self, key, reindex, sparse, unique, *args, **kwargs)

    cls.create_index = create_index


def _increment_nested_fields():
    cls = update_operations.UpdateOperationsMixin
    source = textwrap.dedent(inspect.getsource(cls._perform_python_update))
    old = """                        current_value = doc_to_update.get(k)
                        _validate_inc_mul_field_value(k, current_value, "$inc")
                        doc_to_update[k] = doc_to_update.get(k, 0) + v"""
    new = """                        current_value = _get_nested_field(k, doc_to_update)
                        _validate_inc_mul_field_value(k, current_value, "$inc")
                        _set_nested_field(doc_to_update, k, (current_value or 0) + v)"""
    old = textwrap.dedent("    def f():\n" + old).split("\n", 1)[1]
    new = textwrap.dedent("    def f():\n" + new).split("\n", 1)[1]
    if old not in source:
        raise SystemExit("mongo-standin: nx-27017 changed; review the $inc patch")
    namespace = {}
    exec(compile(source.replace(old, new), update_operations.__file__, "exec"), vars(update_operations), namespace)
    cls._perform_python_update = namespace["_perform_python_update"]


def _project_nested_fields():
    cls = aggregation.AggregationMixin
    original = cls._apply_projection

    def apply_projection(self, projection, document):
        projected = original(self, projection, document)
        for key in [k for k in projected if "." in k and not k.startswith("$")]:
            value = projected.pop(key)
            *parents, leaf = key.split(".")
            target = projected
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = value
        return projected

    cls._apply_projection = apply_projection


_COMPARISONS = {"$lt": "$gt", "$lte": "$gte", "$gt": "$lt", "$gte": "$lte", "$eq": "$eq", "$ne": "$ne"}


class _Unsupported(Exception):
    pass


def _is_field(value):
    return isinstance(value, str) and value.startswith("$") and not value.startswith("$$")


def _is_constant(value):
    if isinstance(value, dict):
        return not any(isinstance(k, str) and k.startswith("$") for k in value)
    if isinstance(value, list):
        return all(_is_constant(v) for v in value)
    return not (isinstance(value, str) and value.startswith("$"))


def _resolve_now(value, now):
    if value == "$$NOW":
        return now
    if isinstance(value, dict):
        return {k: _resolve_now(v, now) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_now(v, now) for v in value]
    return value


def _rewrite_expr(query):
    """`{$expr: {$lt: ["$f", v]}}` (either side) → `{f: {$lt: v}}`, recursively."""
    if isinstance(query, list):
        return [_rewrite_expr(q) for q in query]
    if not isinstance(query, dict):
        return query
    out = {k: _rewrite_expr(v) for k, v in query.items() if k != "$expr"}
    if "$expr" not in query:
        return out
    expr = query["$expr"]
    if not (isinstance(expr, dict) and len(expr) == 1):
        raise _Unsupported(f"$expr {expr!r}")
    (op, args), = expr.items()
    if op not in _COMPARISONS or not isinstance(args, list) or len(args) != 2:
        raise _Unsupported(f"$expr {expr!r}")
    left, right = args
    if _is_field(left) and _is_constant(right):
        field, op, value = left[1:], op, right
    elif _is_field(right) and _is_constant(left):
        field, op, value = right[1:], _COMPARISONS[op], left
    else:
        raise _Unsupported(f"$expr {expr!r}")
    condition = {field: {op: value}}
    return {"$and": [out, condition]} if out else condition


def _add(values):
    dates = [v for v in values if isinstance(v, datetime.datetime)]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(dates) + len(numbers) != len(values) or len(dates) > 1:
        raise _Unsupported(f"$add {values!r}")
    total = sum(numbers)
    if dates:
        return dates[0] + datetime.timedelta(milliseconds=total)
    return total


def _pipeline_to_operators(pipeline):
    sets, incs = {}, {}
    for stage in pipeline:
        if not (isinstance(stage, dict) and len(stage) == 1):
            raise _Unsupported(f"stage {stage!r}")
        (name, fields), = stage.items()
        if name not in ("$set", "$addFields") or not isinstance(fields, dict):
            raise _Unsupported(f"stage {name}")
        for field, value in fields.items():
            if field in sets or field in incs:
                raise _Unsupported(f"{field} set twice")
            if isinstance(value, dict) and set(value) == {"$literal"}:
                sets[field] = value["$literal"]
            elif isinstance(value, dict) and set(value) == {"$add"} and isinstance(value["$add"], list):
                terms = value["$add"]
                refs = [t for t in terms if _is_field(t)]
                if not refs:
                    sets[field] = _add(terms)
                elif refs == [f"${field}"] and len(terms) == 2:
                    incs[field] = _add([t for t in terms if not _is_field(t)])
                else:
                    raise _Unsupported(f"$add {terms!r}")
            elif _is_constant(value):
                sets[field] = value
            else:
                raise _Unsupported(f"{field}: {value!r}")
    update = {}
    if sets:
        update["$set"] = sets
    if incs:
        update["$inc"] = incs
    return update


def _isolate_or(query):
    if isinstance(query, dict) and "$or" in query and len(query) > 1:
        others = {key: value for key, value in query.items() if key != "$or"}
        return {"$and": [others, {"$or": query["$or"]}]}
    return query


def _rewrite_filter(query, now):
    return _isolate_or(_rewrite_expr(_resolve_now(query, now)))


def _equality_as_in(query):
    if not isinstance(query, dict):
        return query
    rewritten = {}
    for key, value in query.items():
        plain = isinstance(value, (str, int, float, bool))
        if plain and not key.startswith("$") and key != "_id":
            rewritten[key] = {"$in": [value]}
        elif key in ("$and", "$or") and isinstance(value, list):
            rewritten[key] = [_equality_as_in(part) for part in value]
        else:
            rewritten[key] = value
    return rewritten


def _rewrite_read(command):
    if "find" in command and "filter" in command:
        command["filter"] = _equality_as_in(command["filter"])
    if "count" in command and "query" in command:
        command["query"] = _equality_as_in(command["query"])
    if "aggregate" in command and isinstance(command.get("pipeline"), list):
        for stage in command["pipeline"]:
            if isinstance(stage, dict) and "$match" in stage:
                stage["$match"] = _equality_as_in(stage["$match"])


def _rewrite_command(command, updates, now):
    if "findAndModify" in command:
        if "query" in command:
            command["query"] = _rewrite_filter(command["query"], now)
        if isinstance(command.get("update"), list):
            command["update"] = _pipeline_to_operators(_resolve_now(command["update"], now))
    if "find" in command or "count" in command or "delete" in command:
        for key in ("filter", "query"):
            if key in command:
                command[key] = _rewrite_filter(command[key], now)
    _rewrite_read(command)
    for update in updates:
        if "q" in update:
            update["q"] = _rewrite_filter(update["q"], now)
        if isinstance(update.get("u"), list):
            update["u"] = _pipeline_to_operators(_resolve_now(update["u"], now))


def _database_clock():
    cls = nx_handler.NeoSQLiteHandler
    original = cls.handle_command

    def handle_command(self, msg):
        # The server's clock at the command's arrival, as a naive UTC date in
        # whole milliseconds (what BSON stores and the decoder hands back).
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        try:
            for kind, document in msg.get("sections", []):
                if not isinstance(document, dict):
                    continue
                if kind == "body":
                    _rewrite_command(document, document.get("updates") or [], now)
                elif kind == "payload":
                    _rewrite_command({}, document.get("updates") or [], now)
        except _Unsupported as unsupported:
            return msg.get("request_id"), {
                "ok": 0,
                "code": 2,
                "errmsg": f"mongo-standin: unsupported pipeline or $expr shape: {unsupported}",
            }
        return original(self, msg)

    cls.handle_command = handle_command


_updates_in_python()
_lookup_reads_only_matches()
_lookups_in_python()
_database_clock()
_increment_nested_fields()
_project_nested_fields()
_compound_indexes_without_id()
_compare_dates_with_millisecond_precision()
main()
