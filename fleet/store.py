"""Job state in Redis: jobs, per-segment completion, worker heartbeats.

Why Redis (and not PostgreSQL): every update a worker makes is one atomic Lua script
(``SADD`` of the segment index, then counters only when it was new), so a redelivered
segment never counts twice and no transaction or lock is held across the network; the
worker heartbeats are keys with a TTL, so a SIGKILLed worker disappears from service
discovery by itself; and Redis is what Celery deployments already run. State outlives
the API process (the API holds none); it outlives a Redis restart as far as Redis'
persistence (RDB/AOF) is configured — see docs/fleet.md.

Keys under a prefix (one per deployment, or per test)::

    {p}:job:{id}          hash   the job's fields; while it runs, also its recent rate
                                 (``recent:{bucket}``, ``recent_since``, ``recent_at``), the frames
                                 analysed in running segments (``partial:{index}``)
    {p}:job:{id}:done     set    indices of finished segments
    {p}:job:{id}:started  set    indices of segments a worker started (redeliveries)
    {p}:job:{id}:workers  set    workers that ran one of its segments
    {p}:jobs              zset   every job id, scored by creation time
    {p}:pending           zset   jobs with segments not yet confirmed by the broker
    {p}:worker:{name}     string a worker's last heartbeat (JSON), expires by itself
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from loglog.redact import redact, redact_url

from .errors import FleetConfigError, JobConflict, JobNotFound, StoreUnavailable
from .eta import BUCKET_S, STALL_S, WINDOW_S, RecentFrames
from .heartbeat import WorkerBeat
from .model import FAILED, PENDING, QUEUED, RUNNING, SUCCEEDED, TERMINAL, Job, is_job_id

_TERMINAL_LUA = "local terminal = {" + ", ".join(f"['{s}']=true" for s in sorted(TERMINAL)) + "}"

# KEYS: job, jobs, pending. ARGV: id, source, created, then field/value pairs.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGET', KEYS[1], 'source')
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return false
"""

# KEYS: job, workers, started. ARGV: worker, now, index. Returns {state, rerun (0/1)}.
# A rerun is a segment some worker started before (its index already in ``started``): the
# broker's redelivered flag is not used, because a broker restarted after a crash flags
# every message it recovers, started or not (11 of 12 were counted before).
_START = f"""
{_TERMINAL_LUA}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if terminal[state] then return {{state, 0}} end
if state == '{QUEUED}' or state == '{PENDING}' then
  redis.call('HSET', KEYS[1], 'state', '{RUNNING}', 'started', ARGV[2])
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], 'partial:' .. ARGV[3])  -- a rerun analyses the segment from 0
if redis.call('SADD', KEYS[3], ARGV[3]) == 1 then return {{'{RUNNING}', 0}} end
redis.call('HINCRBY', KEYS[1], 'redeliveries', 1)
return {{'{RUNNING}', 1}}
"""

# KEYS: job, pending. ARGV: published, total, id. A pending job whose segments are all
# in the broker becomes queued (unless a worker started it or it ended meanwhile).
_PUBLISHED = f"""
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'segments_published', ARGV[1])
if tonumber(ARGV[1]) >= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[2], ARGV[3])
  if redis.call('HGET', KEYS[1], 'state') == '{PENDING}' then
    redis.call('HSET', KEYS[1], 'state', '{QUEUED}')
  end
end
return true
"""

# KEYS: job, done. ARGV: index, analysed in this run of the segment, analysed since the
# last report, now. Returns the state. Counts the new frames in the job's recent buckets
# (see fleet.eta), dropping buckets older than the window, and the segment's own count
# unless it is done. The first report of a job counts from its start; the first after a
# stall (or a start long ago) begins a new measurement: older buckets go, and its own
# frames are not counted (they took an unknown time before now).
_PROGRESS = f"""
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if state ~= '{RUNNING}' then return state end
local now, frames = tonumber(ARGV[4]), tonumber(ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[1], 'recent_at') or '')
local fresh = not last or now - last >= {STALL_S!r}
local first = math.floor((now - {WINDOW_S!r}) / {BUCKET_S!r})
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 7) == 'recent:' and (fresh or tonumber(string.sub(field, 8)) < first) then
    redis.call('HDEL', KEYS[1], field)
  end
end
if frames > 0 then redis.call('HSET', KEYS[1], 'recent_at', ARGV[4]) end
if fresh then
  local started = tonumber(redis.call('HGET', KEYS[1], 'started') or '')
  if not last and started and now - started < {STALL_S!r} then
    redis.call('HSET', KEYS[1], 'recent_since', started)
  else
    redis.call('HSET', KEYS[1], 'recent_since', ARGV[4])
    frames = 0
  end
end
if frames > 0 then
  redis.call('HINCRBY', KEYS[1], 'recent:' .. math.floor(now / {BUCKET_S!r}), frames)
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  redis.call('HSET', KEYS[1], 'partial:' .. ARGV[1], ARGV[2])
end
return state
"""

# KEYS: job, done. ARGV: index, frames, now. Returns {state, segments_done, segments}.
_COMPLETE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HDEL', KEYS[1], 'partial:' .. ARGV[1])
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'frames_done', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'segments_done', 1)
  redis.call('HSET', KEYS[1], 'last_progress', ARGV[3])
end
local f = redis.call('HMGET', KEYS[1], 'state', 'segments_done', 'segments')
return {f[1], tonumber(f[2]), tonumber(f[3])}
"""

# KEYS: job. ARGV: new state, now, then field/value pairs. Only from a non-terminal state.
_END = f"""
{_TERMINAL_LUA}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if terminal[state] then return state end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finished', ARGV[2])
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do  -- the rate state goes with the run
  if string.match(field, '^recent') or string.match(field, '^partial:') then
    redis.call('HDEL', KEYS[1], field)
  end
end
return ARGV[1]
"""

_INT_FIELDS = ("priority", "total_frames", "segment_frames", "segments", "frames_done",
               "segments_done", "segments_published", "redeliveries")  # fmt: skip


@contextmanager
def _translated(url: str) -> Iterator[None]:
    try:
        yield
    except redis.exceptions.ConnectionError as exc:
        raise StoreUnavailable(
            f"the job store at {url} is unreachable ({exc}): start Redis or fix --store"
        ) from exc
    except redis.exceptions.TimeoutError as exc:
        raise StoreUnavailable(f"the job store at {url} timed out ({exc})") from exc
    except redis.exceptions.ResponseError as exc:
        # An error reply, not a lost connection: out of memory (maxmemory), a failed
        # snapshot (MISCONF), a read-only replica. Every write fails the same way until an
        # operator acts, so it is the store being unavailable, with what to check.
        raise StoreUnavailable(
            f"the job store at {url} refused the command ({type(exc).__name__}: {exc}): "
            "check Redis' memory (maxmemory), its disk (MISCONF) and that --store is the "
            "primary, not a read-only replica"
        ) from exc


class JobStore:
    """Every read and write of job state. Safe to share between threads."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "loglog:fleet",
        url: str = "redis",
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Redacted once: the URL goes into every StoreUnavailable message (and so into
        # the API's 503 answers and the logs), never with its password.
        self.client, self.prefix, self.url, self.clock = client, prefix, redact_url(url), clock
        self._create = client.register_script(_CREATE)
        self._start = client.register_script(_START)
        self._progress = client.register_script(_PROGRESS)
        self._complete = client.register_script(_COMPLETE)
        self._end = client.register_script(_END)
        self._published = client.register_script(_PUBLISHED)

    @classmethod
    def connect(cls, url: str, *, prefix: str = "loglog:fleet", timeout: float = 5.0) -> JobStore:
        """A store on the Redis at ``url``; raises :class:`StoreUnavailable` when it is down."""
        try:
            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
            )
        except ValueError as exc:  # not a Redis URL: a config error, at start-up
            raise FleetConfigError(
                f"--store {redact_url(url)!r}: give a Redis URL, e.g. redis://127.0.0.1:6379/0"
            ) from exc
        store = cls(client, prefix=prefix, url=url)
        with _translated(store.url):
            client.ping()
        return store

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- jobs ----------------------------------------------------------------------------

    def create(self, job: Job) -> Job:
        """Store a new job; the same id with the same source returns the stored job."""
        return self.create_new(job)[0]

    def create_new(self, job: Job) -> tuple[Job, bool]:
        """:meth:`create`, and whether the job is new (False: the stored one came back)."""
        fields: list[Any] = []
        for name in ("id", "source", "state", "priority", "total_frames", "fps",
                     "segment_frames", "segments", "created"):  # fmt: skip
            fields += [name, getattr(job, name)]
        fields += ["frames_done", 0, "segments_done", 0, "segments_published", 0,
                   "redeliveries", 0]  # fmt: skip
        keys = [self._key("job", job.id), self._key("jobs"), self._key("pending")]
        with _translated(self.url):
            existing = self._create(keys=keys, args=[job.id, job.source, job.created, *fields])
        if existing is not None:
            if existing != job.source:
                raise JobConflict(
                    f"job {job.id!r} exists already for {existing!r}: choose another id"
                )
            return self.get(job.id), False
        return job, True

    def get(self, job_id: str) -> Job:
        """The job, or :class:`JobNotFound`."""
        _known_form(job_id)
        with _translated(self.url):
            pipe = self.client.pipeline()
            pipe.hgetall(self._key("job", job_id))
            pipe.smembers(self._key("job", job_id, "workers"))
            data, workers = pipe.execute()
        if not data:
            raise JobNotFound(f"no job {job_id!r}: list jobs with GET /v1/jobs")
        return _job(data, workers)

    def jobs(self, state: str | None = None, limit: int = 1000) -> list[Job]:
        """Jobs, newest first, optionally only those in ``state``; at most ``limit``.
        Read a page of ids at a time, so ``limit=1`` costs one page, not every job ever
        submitted (the red team's submit storm made each such call read them all)."""
        jobs: list[Job] = []
        page = max(1, min(limit, 500)) if state is None else 500
        start = 0
        while len(jobs) < limit:
            with _translated(self.url):
                ids = [
                    str(i)
                    for i in self.client.zrevrange(self._key("jobs"), start, start + page - 1)
                ]
                if not ids:
                    break
                pipe = self.client.pipeline()
                for job_id in ids:
                    pipe.hgetall(self._key("job", job_id))
                    pipe.smembers(self._key("job", job_id, "workers"))
                raw = pipe.execute()
            start += len(ids)
            for i in range(0, len(raw), 2):
                if raw[i]:
                    job = _job(raw[i], raw[i + 1])
                    if state is None or job.state == state:
                        jobs.append(job)
        return jobs[:limit]

    def pending(self) -> list[str]:
        """Jobs with segments the broker has not confirmed yet, oldest first."""
        with _translated(self.url):
            return [str(i) for i in self.client.zrange(self._key("pending"), 0, -1)]

    def mark_published(self, job_id: str, published: int, total: int) -> None:
        """Record that the broker confirmed segments ``[0, published)``; with all of them,
        a ``pending`` job becomes ``queued``."""
        keys = [self._key("job", job_id), self._key("pending")]
        with _translated(self.url):
            self._published(keys=keys, args=[published, total, job_id])

    def drop_pending(self, job_id: str) -> None:
        """Stop publishing this job's segments (it ended)."""
        with _translated(self.url):
            self.client.zrem(self._key("pending"), job_id)

    # -- segments (called by workers) ------------------------------------------------------

    def start_segment(self, job_id: str, worker: str, index: int) -> tuple[str | None, bool]:
        """Mark the job running; return its state (None when the job is unknown) and
        whether segment ``index`` was started before (a rerun, counted in the job's
        ``redeliveries``). A worker skips the segment when the state is terminal."""
        keys = [self._key("job", job_id), self._key("job", job_id, "workers"),
                self._key("job", job_id, "started")]  # fmt: skip
        with _translated(self.url):
            out = self._start(keys=keys, args=[worker, self.clock(), index])
        if out is None:
            return None, False
        state, rerun = out
        return str(state), bool(int(rerun))

    def progress(self, job_id: str, index: int, *, analysed: int, new: int) -> str | None:
        """Record that a worker analysed ``new`` more frames of segment ``index`` (so far
        ``analysed`` in this run of it) for the job's recent rate (:mod:`fleet.eta`);
        return the job's state (None when unknown). Workers call it every few frames,
        instead of reading the state alone, so a cancel still stops a running segment."""
        keys = [self._key("job", job_id), self._key("job", job_id, "done")]
        with _translated(self.url):
            out = self._progress(keys=keys, args=[index, analysed, new, self.clock()])
        return None if out is None else str(out)

    def complete_segment(self, job_id: str, index: int, frames: int) -> tuple[str, bool]:
        """Count segment ``index`` done (once, however often it is delivered); return the
        job's state and whether all its segments are done."""
        keys = [self._key("job", job_id), self._key("job", job_id, "done")]
        with _translated(self.url):
            out = self._complete(keys=keys, args=[index, frames, self.clock()])
        if out is None:
            raise JobNotFound(f"no job {job_id!r}")
        state, done, total = out
        return str(state), int(done) >= int(total)

    def state(self, job_id: str) -> str | None:
        """The job's state alone (cheap: workers poll it between frames)."""
        with _translated(self.url):
            state = self.client.hget(self._key("job", job_id), "state")
        return None if state is None else str(state)

    def succeed(self, job_id: str, result: str) -> str:
        """Mark the job succeeded with its results file; returns the final state."""
        return self._finish(job_id, SUCCEEDED, "result", result)

    def fail(self, job_id: str, error: str) -> str:
        """Mark the job failed with ``error`` (unless it ended already). The record keeps
        the error with its credentials replaced by ``***``: it is shown to every reader."""
        return self._finish(job_id, FAILED, "error", redact(error))

    def cancel(self, job_id: str) -> str:
        """Cancel the job (unless it ended already); returns the final state."""
        from .model import CANCELLED

        return self._finish(job_id, CANCELLED)

    def _finish(self, job_id: str, state: str, *fields: str) -> str:
        _known_form(job_id)
        with _translated(self.url):
            out = self._end(keys=[self._key("job", job_id)], args=[state, self.clock(), *fields])
            if out is None:
                raise JobNotFound(f"no job {job_id!r}: list jobs with GET /v1/jobs")
            if out == state:
                self.client.zrem(self._key("pending"), job_id)
        return str(out)

    # -- workers ----------------------------------------------------------------------------

    def heartbeat(self, beat: WorkerBeat, ttl: float) -> None:
        """Record that worker ``beat.name`` is alive (``seen`` now); the record expires
        after ``ttl`` seconds."""
        body = dataclasses.replace(beat, seen=self.clock()).to_json()
        with _translated(self.url):
            self.client.set(self._key("worker", beat.name), body, px=int(ttl * 1000))

    def forget_worker(self, name: str) -> None:
        """Remove a worker's heartbeat (it stopped cleanly)."""
        with _translated(self.url):
            self.client.delete(self._key("worker", name))

    def workers(self) -> list[WorkerBeat]:
        """The heartbeats of live workers, by name (a record that is not a heartbeat, e.g.
        written by hand or by an incompatible version, is left out)."""
        with _translated(self.url):
            keys = sorted(self.client.scan_iter(self._key("worker", "*"), count=500))
            values = self.client.mget(keys) if keys else []
        beats = (WorkerBeat.from_json(value) for value in values if value)
        return [beat for beat in beats if beat is not None]


def _known_form(job_id: str) -> None:
    """No job has an id outside :func:`check_job_id`'s form; such an id is not looked up,
    because ``x:done`` or ``x:workers`` would name one of job x's own keys (a set, which
    Redis refuses to read as a hash)."""
    if not is_job_id(job_id):
        raise JobNotFound(f"no job {job_id!r}: list jobs with GET /v1/jobs")


def _job(data: dict[str, str], workers: set[str]) -> Job:
    def number(name: str) -> float | None:
        value = data.get(name)
        return float(value) if value not in (None, "") else None

    ints = {name: int(data.get(name) or 0) for name in _INT_FIELDS}
    buckets, partial = [], 0
    for field, value in data.items():
        if field.startswith("recent:"):
            buckets.append((int(field[7:]), int(value)))
        elif field.startswith("partial:"):
            partial += int(value)
    recent = RecentFrames(
        tuple(sorted(buckets)), number("recent_since"), number("recent_at"), partial
    )
    return Job(
        id=data["id"],
        source=data["source"],
        state=data["state"],
        fps=float(data["fps"]),
        created=float(data["created"]),
        started=number("started"),
        finished=number("finished"),
        last_progress=number("last_progress"),
        error=data.get("error"),
        result=data.get("result"),
        workers=tuple(sorted(workers)),
        recent=recent,
        **ints,
    )
