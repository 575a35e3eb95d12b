"""The performance suite: engage-suite over HTTP against the machine's own limits.

Run it as ``python bench/suite.py`` (or ``nox -s bench``); ``--help`` lists the options.

What it measures
----------------
In one run, each ceiling next to the figures it bounds, so that noise from
other work on the machine hits both alike:

* the ceilings -- a bare Litestar handler served by granian with the same
  options and worker count as ``engage serve`` (measured twice, around the
  reads and writes, and averaged); bcrypt at cost 12, checks per second on a
  thread pool of one thread per core (before and after the logins); a raw
  ``\\copy`` of the backfill CSV into a bare table with the embedded ``psql``;
* engage-suite, as ``engage serve --workers N`` in a subprocess on a loopback
  port, loaded by ``wrk``: logins (``POST /api/auth/token``), authenticated
  first-page reads (``GET /api/dashboard/metrics``), summaries (``GET
  /api/dashboard/summary``, a year by day in Europe/Berlin), single writes,
  batch writes (100 metrics per request), reads alone and then while a login
  storm runs, and ``engage metrics backfill`` of 1,000,000 rows (the real
  command, timed as a whole process);
* the floors under a read: Litestar running the read's two queries (session
  liveness, newest page) on psycopg and nothing else, one round trip each and
  both in one (a pipeline, as engage-suite sends them), so that the table shows
  how much of the distance to the bare handler is PostgreSQL round trips;
* the newer features: single writes with an API key, the web app's static
  files, what the reads write behind the scenes (``last_seen_at`` at most once
  a minute per session, no activity entries), and the live stream's memory
  and fan-out (``bench/stream.py`` on its own server, ``--streams 0`` skips it);
* a ``\\copy`` of the backfill CSV into ``engagement_metrics`` itself (rolled
  back), the ceiling of the backfill's goal, right before the backfill and on
  the same table (both after the writes, each after a ``VACUUM (ANALYZE)``);
* the server's CPU time per request (its workers, and PostgreSQL's backends),
  which other load on the machine disturbs much less than requests per second;
* each worker's resident memory after the load.

Every security rule stays on: bearer tokens from real logins, each request's
session checked for liveness in PostgreSQL, the JSON logs written (to a file).
Only the per-address and per-email login limits are raised, because the load
comes from one address and would otherwise measure the limiter. Logins are
counted in the database (one session each) over the steady part of the run:
wrk's own count drops the requests in flight at either end, and a login takes
about a second under load.

The data
--------
10,000 users, all with the same real bcrypt hash (cost 12) of one password
(hashing 10,000 passwords would take half an hour of CPU), and 1,000,000
metrics loaded with ``COPY``: 100 per user, of 8 types, over the past 365 days,
oldest first and interleaved across users (a user's rows are scattered over
the heap, as in production), then ``VACUUM (ANALYZE)``. The backfill file is
another 1,000,000 rows for the same users in the two years before that.

Where it runs
-------------
Its own embedded PostgreSQL in a fresh temporary directory (never the user's
data directory), with ``--redis`` its own valkey-server, its own servers on
free loopback ports; all stopped and the directory removed at the end, also on
Ctrl-C, SIGTERM or the ``--time-limit``.

The modules
-----------
``cli`` the command line and the run from start to end · ``data`` the users and
metrics · ``bulk_loads`` the backfill CSV, its raw ``\\copy`` and ``engage metrics
backfill`` · ``servers`` PostgreSQL, valkey, ``engage serve`` and the bare apps ·
``load`` wrk, its Lua scripts and its results · ``measures`` each measurement ·
``features`` the newer features' measurements ·
``report`` the table, the goals, the summary lines and the JSON.
"""

from __future__ import annotations

import sys


def progress(message: str) -> None:
    """One line of progress on stderr (the results go to stdout)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)
