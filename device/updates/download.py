"""Downloading a bundle into a resumable partial file: chunks retained on the broker, or HTTP(S) with Range.

Neither can hang: every chunk has a retry budget (`updates.chunk_retries`), the whole download has a
deadline (`updates.download_timeout_s`, counted from its first start, so restarts do not reset it), and
the job's own expiry is checked all along.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from device.config import UpdatesSection
from device.errors import BadInput
from device.logs import kv
from device.updates.host import UpdaterLink
from device.updates.job import HttpSource, JobDoc, MqttSource, UpdateState
from device.updates.machine import Progress, Refused, Stopping
from device.updates.paths import job_file
from device.updates.transfer import ChunkFile, chunk_topic

log = logging.getLogger("portrait.updates")


def utc(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))


class ChunkFeed:
    """Chunks from the broker: the network thread drops them in (never blocking), the download takes them."""

    def __init__(self, link: Callable[[], UpdaterLink | None]) -> None:
        self._link = link
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=4096)
        self.connects = 0  # a new value means a new session: the subscriptions are gone

    def put(self, topic: str, payload: bytes) -> None:
        with contextlib.suppress(queue.Full):  # dropped chunks are asked for again
            self.inbox.put_nowait((topic, payload))

    def connected(self) -> None:
        self.connects += 1

    def online(self) -> bool:
        link = self._link()
        return link is not None and link.connected.is_set()

    def drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self.inbox.get_nowait()

    def subscribe(self, topics: list[str]) -> bool:
        link = self._link()
        if link is None or not link.connected.is_set():
            return False
        link.client.subscribe([(t, 1) for t in topics])  # retained chunks come at once, even again
        return True

    def unsubscribe(self, topics: list[str]) -> None:
        link = self._link()
        if link is not None and link.connected.is_set():
            link.client.unsubscribe(topics)


@dataclass
class Download:
    job: JobDoc
    cfg: UpdatesSection
    folder: Path  # <state>/updates/downloads
    started: float  # wall clock of the first start
    stop: threading.Event
    report: Callable[[Progress], None]

    @property
    def deadline(self) -> float:
        return self.started + self.cfg.download_timeout_s

    def check_clock(self, done: str) -> None:
        """Refuse an expired job, fail one past the deadline; `done` says how far it got."""
        now = time.time()
        if self.job.expired(now):
            raise Refused(
                UpdateState.REJECTED, f"job expired at {utc(self.job.expires)} UTC during the download ({done})"
            )
        if now > self.deadline:
            raise Refused(
                UpdateState.FAILED,
                f"download did not finish within {self.cfg.download_timeout_s:g} s "
                f"of its start at {utc(self.started)} UTC (updates.download_timeout_s); {done}",
            )

    def run(self, feed: ChunkFeed) -> None:
        if isinstance(self.job.source, HttpSource):
            self._http(self.job.source)
        else:
            self._chunks(self.job.source, feed)

    # -- chunks retained on the broker ------------------------------------------------------------

    def _chunks(self, src: MqttSource, feed: ChunkFeed) -> None:
        job, cfg = self.job, self.cfg
        cf = ChunkFile(self.folder, job.id, job.size, src.chunk_bytes, src.chunks)
        total = len(src.chunks)

        def progress(resumed: int) -> Progress:
            return Progress(
                chunks=cf.have(), total=total, bytes=min(cf.have() * src.chunk_bytes, job.size), resumed_from=resumed
            )

        try:
            if cf.resumed_with:
                cf.verify_chunks()
            resumed = cf.have()
            self.report(progress(resumed))
            feed.drain()
            tries: dict[int, int] = {}  # asks of a chunk that brought no good copy of it
            bad: dict[int, int] = {}  # copies that came with the wrong sha256
            started, fetched = time.monotonic(), 0
            last_report = time.monotonic()
            while missing := cf.missing():
                window = missing[: cfg.window_chunks]
                topics = {chunk_topic(src.topic, i): i for i in window}
                pending = set(window)
                asked_gen, asked_at = -1, 0.0
                while pending:
                    if self.stop.is_set():
                        cf.checkpoint()
                        raise Stopping
                    self.check_clock(f"{cf.have()} of {total} chunks")
                    now = time.monotonic()
                    timed_out = asked_gen == feed.connects and now - asked_at > cfg.chunk_timeout_s
                    if asked_gen != feed.connects or timed_out:
                        # First ask, a reconnect (clean session: subscriptions gone), or chunks lost. Only a
                        # timeout while connected spends a try: a broker outage is not the chunk's fault.
                        if timed_out and feed.online():
                            for chunk in sorted(pending):
                                tries[chunk] = tries.get(chunk, 0) + 1
                                if tries[chunk] > cfg.chunk_retries:
                                    raise Refused(UpdateState.FAILED, self._gave_up(src, chunk, tries, bad))
                        wanted = [t for t, i in topics.items() if i in pending]
                        if feed.subscribe(wanted):
                            asked_gen, asked_at = feed.connects, now
                    try:
                        topic, data = feed.inbox.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    index = topics.get(topic)
                    if index is None or index not in pending:
                        continue
                    try:
                        ok = cf.write(index, data)
                    except BadInput as exc:
                        raise Refused(UpdateState.REJECTED, f"size mismatch: {exc}") from None
                    if ok:
                        pending.discard(index)
                        fetched += len(data)
                    else:
                        bad[index] = bad.get(index, 0) + 1
                feed.unsubscribe(list(topics))
                cf.checkpoint()
                if time.monotonic() - last_report >= 0.5 or not cf.missing():
                    last_report = time.monotonic()
                    self.report(progress(resumed))
                if cfg.rate_bytes_s:
                    ahead = fetched / cfg.rate_bytes_s - (time.monotonic() - started)
                    if ahead > 0 and self.stop.wait(ahead):
                        raise Stopping
                if not cf.missing():
                    cf.verify_chunks()  # a torn write before a crash shows up here and is fetched again
        finally:
            cf.close()

    def _gave_up(self, src: MqttSource, index: int, tries: dict[int, int], bad: dict[int, int]) -> str:
        wrong = bad.get(index, 0)
        why = f"{wrong} copies came with the wrong sha256" if wrong else "it never came"
        return (
            f"chunk {index} of {len(src.chunks)}: no good copy after {tries[index]} tries ({why}) on "
            f"{chunk_topic(src.topic, index)}; updates.chunk_retries is {self.cfg.chunk_retries}"
        )

    # -- HTTP(S) --------------------------------------------------------------------------------------

    def _http(self, src: HttpSource) -> None:
        """HTTP(S) with Range resume into the same partial file."""
        job = self.job
        part = job_file(self.folder, job.id, ".part")
        resumed = part.stat().st_size if part.is_file() else 0
        self.report(Progress(bytes=resumed, resumed_from=resumed))
        idle, error = 0, ""  # tries in a row that brought no byte
        while (have := part.stat().st_size if part.is_file() else 0) < job.size:
            self.check_clock(f"{have} of {job.size} bytes")
            before = have
            request = urllib.request.Request(src.url, headers={"Range": f"bytes={have}-"} if have else {})
            timeout = max(1.0, min(30.0, self.deadline - time.time()))
            try:
                with urllib.request.urlopen(request, timeout=timeout) as resp:
                    if have and resp.status != 206:
                        have = before = 0  # the server ignored Range: start over
                    with part.open("ab" if have else "wb") as fh:
                        while block := resp.read(1 << 16):
                            if self.stop.is_set():
                                raise Stopping
                            self.check_clock(f"{have} of {job.size} bytes")
                            have += len(block)
                            if have > job.size:
                                raise Refused(
                                    UpdateState.REJECTED, f"size mismatch: the server sends more than {job.size} bytes"
                                )
                            fh.write(block)
                        fh.flush()
                        os.fsync(fh.fileno())
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                error = str(exc)
                log.warning("download interrupted; resuming", extra=kv(job_id=job.id, error=error))
            got = part.stat().st_size if part.is_file() else 0
            idle = 0 if got > before else idle + 1
            if idle > self.cfg.chunk_retries:
                raise Refused(
                    UpdateState.FAILED,
                    f"HTTP download from {src.url}: {idle} tries in a row brought "
                    f"nothing ({error or 'empty responses'}); updates.chunk_retries is "
                    f"{self.cfg.chunk_retries}",
                )
            if idle and self.stop.wait(2.0):
                raise Stopping
        self.report(Progress(bytes=part.stat().st_size, resumed_from=resumed))
