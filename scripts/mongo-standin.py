"""Launches the nx-27017 MongoDB stand-in for the tests, with three fixes.

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
"""

import inspect
import textwrap

from neosqlite.collection import index_manager, sql_translator_unified
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


set_force_fallback(True)
_compound_indexes_without_id()
_compare_dates_with_millisecond_precision()
main()
