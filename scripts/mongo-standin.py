"""Launches the nx-27017 MongoDB stand-in for the tests, with five fixes.

Both are differences from real MongoDB that Palm's leases and outbox would
trip over; the workarounds live here, in test tooling, never in service code.

1. nx-27017 turns simple update operators ($set, $push, $min, ...) into
   SQLite JSON functions, which store BSON dates and sub-documents as
   strings. neosqlite's "force fallback" switch routes every update through
   its Python implementation, which keeps the types.
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
"""

import inspect
import textwrap

from neosqlite.collection import index_manager, sql_translator_unified
from neosqlite.collection.query_helper import aggregation, update_operations
from neosqlite.collection.query_helper.utils import set_force_fallback
from nx_27017.nx_27017 import main


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


set_force_fallback(True)
_increment_nested_fields()
_project_nested_fields()
_compound_indexes_without_id()
_compare_dates_with_millisecond_precision()
main()
