"""Launches the nx-27017 MongoDB stand-in for the tests, with two fixes.

Both are differences from real MongoDB that Palm's leases and outbox would
trip over; the workarounds live here, in test tooling, never in service code.

1. nx-27017 turns simple update operators ($set, $push, $min, ...) into
   SQLite JSON functions, which store BSON dates and sub-documents as
   strings. neosqlite's "force fallback" switch routes every update through
   its Python implementation, which keeps the types.
2. Date comparisons in queries are wrapped in SQLite's datetime(), which
   truncates to whole seconds, so `{t: {$lt: now}}` misses a `t` earlier in
   the same second. julianday() keeps sub-millisecond precision.
"""

import inspect
import textwrap

from neosqlite.collection import sql_translator_unified
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


set_force_fallback(True)
_compare_dates_with_millisecond_precision()
main()
