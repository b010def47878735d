"""The device's MQTT link (paho-mqtt 2.x, MQTT v5, QoS 1), its status topics and Home Assistant discovery.

    portrait/<id>/availability   retained  online | offline (Last Will)
    portrait/<id>/state          retained  JSON
    portrait/<id>/stats          retained  JSON, every mqtt.stats_interval_s
    portrait/<id>/events                   JSON, through the on-disk outbox
    portrait/<id>/job            retained  JSON: the current (else the last) render job's state
    portrait/<id>/capture        retained  JSON: the last capture's outcome
    portrait/<id>/visitor        retained  ON | OFF: a face in front of the camera
    portrait/<id>/snapshot       retained  JPEG: a frame of the last finished clip
    portrait/<id>/cmd/<verb>               commands in; replies on the v5 ResponseTopic with the
    portrait/group/<group>/cmd/<verb>      CorrelationData, else on portrait/<id>/reply

Connection policy: paho's network thread (loop_start) connects and reconnects, with exponential
backoff from reconnect_min_s to reconnect_max_s. Every failure is logged with its cause:
- an unreachable broker (refused, timeout, DNS) is retried forever: the exhibit keeps running;
- a broker that refuses us (CONNACK: bad user name or password, not authorized) or a TLS failure (wrong
  CA, bad certificate) is a misconfiguration: before the first successful connection it is retried
  `max_auth_failures` times, then `fatal` is set and the daemon exits with code 2 (the unit does not
  restart on 2). After one success everything is retried forever: a broker restarting with a changed
  ACL must not kill the exhibit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device.config import ConfigError, MqttSection
from device.logs import kv

log = logging.getLogger(__name__)

# (topic, payload, properties, ack): the handler calls ack() once the message is dealt with (answered,
# queued, refused): only then does the broker forget it, so a crash before that gets it redelivered.
MessageHandler = Callable[[str, bytes, Properties | None, Callable[[], None]], None]


@dataclass(frozen=True)
class Topics:
    prefix: str
    device_id: str
    groups: tuple[str, ...] = ()
    base: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", f"{self.prefix}/{self.device_id}")

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def reply(self) -> str:
        return f"{self.base}/reply"

    @property
    def job(self) -> str:
        return f"{self.base}/job"

    @property
    def capture(self) -> str:
        return f"{self.base}/capture"

    @property
    def visitor(self) -> str:
        return f"{self.base}/visitor"

    @property
    def snapshot(self) -> str:
        return f"{self.base}/snapshot"

    def command(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}"

    def command_filters(self) -> list[str]:
        return [f"{self.base}/cmd/+"] + [f"{self.prefix}/group/{g}/cmd/+" for g in self.groups]


class Delivery:
    """One tracked QoS 1 publish: `wait()` returns the PUBACK's reason code, or None if not yet."""

    def __init__(self, link: MqttLink, mid: int, after: int) -> None:
        self.link, self.mid, self.after = link, mid, after

    def wait(self, timeout: float) -> ReasonCode | None:
        return self.link._wait_ack(self.mid, self.after, timeout)


class MqttLink:
    def __init__(
        self,
        cfg: MqttSection,
        topics: Topics,
        on_message: MessageHandler,
        on_connected: Callable[[], None] | None = None,
        password: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.topics = topics
        self.on_message = on_message
        self.on_connected = on_connected
        self.connected = threading.Event()
        self.fatal: str | None = None  # set when we gave up: the daemon exits with code 2
        self.ever_connected = False
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refusals = 0
        # PUBACK bookkeeping: mid -> (reason, ack number). The number tells a fresh ack from a stale
        # one of an earlier message that had the same (recycled) mid. See Delivery.
        self._acks: dict[int, tuple[ReasonCode, int]] = {}
        self._ack_count = 0
        self._ack_cond = threading.Condition()

        client_id = cfg.client_id or f"portrait-{topics.device_id}"
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, manual_ack=True
        )
        self._connection = 0  # which connection a received message came on: acks do not cross reconnects
        self.client.will_set(topics.availability, "offline", qos=1, retain=True)
        if cfg.username is not None:
            self.client.username_pw_set(cfg.username, password)
        if cfg.tls.enabled:
            try:
                self.client.tls_set(
                    ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                    certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                    keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                    tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"mqtt.tls: cannot load the CA or client certificate: {exc}") from None
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.cfg
        self.client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        # A persistent session: the broker keeps our subscriptions and the QoS 1 commands sent while we
        # are away (restart, outage) for session_expiry_s, and delivers them when we return.
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = cfg.session_expiry_s
        self.client.connect_async(
            cfg.host, cfg.effective_port(), cfg.keepalive_s, clean_start=cfg.session_expiry_s == 0, properties=props
        )
        self.client.loop_start()  # paho's network thread: connects, reconnects with backoff, sends

    def stop(self, timeout: float = 3.0) -> None:
        """Say `offline` (a clean disconnect does not fire the Last Will), disconnect, end the loop."""
        self._stop.set()
        if self.connected.is_set():
            info = self.client.publish(self.topics.availability, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not sent: the Last Will says it
                info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    def _failed(self, permanent: bool, reason: str) -> None:
        """One failed connection attempt: log its cause; give up on a misconfiguration (see module doc)."""
        self.last_error = reason
        if self._stop.is_set():
            return
        if permanent and not self.ever_connected:
            self.refusals += 1
            limit = self.cfg.max_auth_failures
            log.error("mqtt connect failed", extra=kv(reason=reason, attempt=self.refusals, limit=limit or "none"))
            if limit and self.refusals >= limit:
                self.fatal = f"{reason} (gave up after {self.refusals} attempts)"
                self.client.disconnect()  # ends paho's retry loop; the daemon sees `fatal` and exits 2
        else:
            log.warning("mqtt connect failed; retrying", extra=kv(reason=reason))

    def _diagnose(self) -> tuple[bool, str]:
        """Why paho could not connect (its callback does not say): (permanent?, reason).

        Repeats the TCP connect and the TLS handshake with the same settings, to name the cause:
        a TLS failure (wrong CA, bad certificate) is a misconfiguration; anything else may pass.
        """
        cfg = self.cfg
        where = f"{cfg.host}:{cfg.effective_port()}"
        try:
            sock = socket.create_connection((cfg.host, cfg.effective_port()), timeout=5)
        except OSError as exc:
            return False, f"cannot reach broker {where}: {exc}"
        with sock:
            if not cfg.tls.enabled:
                return False, f"connection to broker {where} failed"
            try:
                context = ssl.create_default_context(cafile=str(cfg.tls.ca_file) if cfg.tls.ca_file else None)
                if cfg.tls.cert_file and cfg.tls.key_file:
                    context.load_cert_chain(str(cfg.tls.cert_file), str(cfg.tls.key_file))
                with context.wrap_socket(sock, server_hostname=cfg.host):
                    pass
            except ssl.SSLError as exc:
                return True, f"TLS handshake with {where} failed: {exc}"
            except OSError as exc:
                return False, f"TLS connection to {where} failed: {exc}"
        return False, f"connection to broker {where} failed"

    # -- paho callbacks (network thread: never block here) ----------------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            where = f"{self.cfg.host}:{self.cfg.effective_port()}"
            self._failed(True, f"broker {where} refused the connection: {reason}")
            return
        if self._stop.is_set():
            return  # shutting down: an `online` now would outlive us
        self.ever_connected = True
        self.last_error = None
        self._connection += 1
        for topic in self.topics.command_filters():
            client.subscribe(topic, qos=1)
        # Subscribed before `online` goes out: whoever sees `online` can send commands right away.
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        self.connected.set()
        log.info("mqtt connected", extra=kv(host=self.cfg.host, port=self.cfg.effective_port()))
        if self.on_connected is not None:
            try:
                self.on_connected()
            except Exception:
                log.exception("on_connected hook failed")

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._failed(*self._diagnose())

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected and not self._stop.is_set():
            self.last_error = f"connection lost: {reason}"
            log.warning("mqtt connection lost; reconnecting", extra=kv(reason=str(reason)))

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        ack = self._acker(message)
        try:
            self.on_message(message.topic, message.payload, getattr(message, "properties", None), ack)
        except Exception:
            log.exception("command dispatch failed", extra=kv(topic=message.topic))
            ack()

    def _acker(self, message: paho.MQTTMessage) -> Callable[[], None]:
        connection, done = self._connection, threading.Event()

        def ack() -> None:
            # After a reconnect the broker redelivers what we did not ack, and the old id may now
            # name another message: leave it.
            if message.qos > 0 and not done.is_set() and connection == self._connection:
                done.set()
                with contextlib.suppress(Exception):
                    self.client.ack(message.mid, message.qos)

        return ack

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        # Called with paho's message lock held: only touch our own condition, never paho.
        with self._ack_cond:
            self._ack_count += 1
            self._acks[mid] = (reason, self._ack_count)
            self._ack_cond.notify_all()

    def _wait_ack(self, mid: int, after: int, timeout: float) -> ReasonCode | None:
        with self._ack_cond:
            self._ack_cond.wait_for(lambda: mid in self._acks and self._acks[mid][1] > after, timeout)
            entry = self._acks.get(mid)
            if entry is None or entry[1] <= after:
                return None
            del self._acks[mid]
            return entry[0]

    # -- publishing -------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes | str, retain: bool = False, props: Properties | None = None) -> Any:
        """Fire and forget at QoS 1 (paho keeps it and sends it after a reconnect)."""
        return self.client.publish(topic, payload, qos=1, retain=retain, properties=props)

    def publish_json(self, topic: str, doc: dict[str, Any], retain: bool = False) -> Any:
        return self.publish(topic, json.dumps(doc, default=str), retain=retain)

    def publish_tracked(self, topic: str, payload: bytes, retain: bool = False) -> Delivery:
        with self._ack_cond:
            after = self._ack_count  # any ack counted after this belongs to a message sent from now on
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return Delivery(self, info.mid, after)

    def reply(self, request_props: Properties | None, doc: dict[str, Any]) -> None:
        """Answer a command on its v5 response topic with its correlation data, else on .../reply."""
        topic = getattr(request_props, "ResponseTopic", None) if request_props is not None else None
        correlation = getattr(request_props, "CorrelationData", None) if request_props is not None else None
        if not topic or any(c in topic for c in "+#") or "/cmd/" in topic:
            # Never let a request aim our reply at a command topic (ours or another device's).
            topic = self.topics.reply
        props = None
        if correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.CorrelationData = correlation
        self.publish(topic, json.dumps(doc, default=str), props=props)


# -- the status topics Home Assistant's entities read ------------------------------------------------

JOB_STATES = ("idle", "queued", "running", "done", "failed", "cancelled")
CAPTURE_STATES = ("refused", "queued", "running", "done", "failed", "cancelled")
# What each job event says about its job.
_JOB_EVENTS = {
    "job.accepted": "queued",
    "job.resumed": "queued",
    "job.requeued": "queued",
    "job.started": "running",
    "job.progress": "running",
    "job.done": "done",
    "job.failed": "failed",
    "job.cancelled": "cancelled",
}
# Events that make their job the one shown even while another is: the worker runs one job at a time.
_TAKES_OVER = ("job.started", "job.resumed", "job.requeued")
SNAPSHOT_MAX_SIDE = 640
SNAPSHOT_MAX_BYTES = 200_000  # a retained message every client and Home Assistant fetch on (re)connect
SNAPSHOT_AT_S = 1.0  # a frame this far in: past the first frames, the face at rest; within a short clip


def clip_snapshot(clip: Path, max_side: int = SNAPSHOT_MAX_SIDE, max_bytes: int = SNAPSHOT_MAX_BYTES) -> bytes:
    """A JPEG of one frame of a finished clip (about a second in, or its middle if shorter), at most
    `max_side` pixels on its longest side and `max_bytes` long. Decodes only the frames up to it."""
    import av
    import cv2

    clip = Path(clip)
    try:
        with av.open(str(clip), "r") as container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate or 25)
            total = stream.frames or 0
            target = round(SNAPSHOT_AT_S * rate)
            if total:
                target = min(target, total // 2)
            frame = None
            for index, decoded in enumerate(container.decode(stream)):
                frame = decoded
                if index >= target:
                    break
            if frame is None:
                raise ValueError("no video frames")
            image = frame.to_ndarray(format="bgr24")
    except (av.FFmpegError, IndexError, ValueError, OSError) as exc:
        raise ValueError(f"clip {clip}: no frame for a snapshot ({exc})") from None
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(width, height))
    for quality in (85, 70, 55, 40):
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        else:
            small = image
        ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(encoded) <= max_bytes:
            return encoded.tobytes()
        scale *= 0.8
    raise ValueError(f"clip {clip}: the snapshot stays over {max_bytes} bytes")


class StatusTopics:
    """The retained topics under portrait/<id>/ that Home Assistant's entities read: the current job,
    the last capture, a visitor in view, a snapshot of the last clip.

    Fed by the daemon's events (any thread) and the live stage's camera frames. The latest of each is
    kept and published again on every connection, so a broker that lost its retained messages, or
    a daemon that was away, still shows the truth. Publishing happens under the lock: two threads
    reporting on one job cannot leave the older state retained."""

    def __init__(
        self,
        topics: Topics,
        visitor_frames: Callable[[], int],
        snapshot_expiry_s: Callable[[Path], float | None],
        camera: bool,
    ) -> None:
        self.topics = topics
        self.link: MqttLink | None = None
        self.visitor_frames = visitor_frames  # frames in a row that turn the visitor sensor on or off
        self.snapshot_expiry_s = snapshot_expiry_s  # a visitor's clip: the retention; others: None
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[bytes, float | None]] = {}  # topic -> (payload, expires at)
        self._job: dict[str, Any] = {"state": "idle", "job_id": None}
        self._states: dict[str, str] = {}  # recent job id -> state, for a capture reported after its job moved
        self._capture: dict[str, Any] | None = None
        self._present = False
        self._run = 0  # camera frames in a row that disagree with _present
        self._snapshots = 0  # clips finished so far: only the newest one's snapshot is published
        self._set(topics.job, self._job)
        if camera:
            self._set(topics.visitor, b"OFF")

    def publish_all(self) -> None:
        """On (re)connect: every status topic again, a visitor snapshot with what is left of its expiry."""
        with self._lock:
            for topic, (payload, expires) in list(self._latest.items()):
                self._publish(topic, payload, expires)

    def _set(self, topic: str, payload: bytes | dict[str, Any], expiry_s: float | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload, default=str).encode()
        expires = None if expiry_s is None else time.time() + expiry_s
        with self._lock:
            self._latest[topic] = (data, expires)
            self._publish(topic, data, expires)

    def _publish(self, topic: str, payload: bytes, expires: float | None) -> None:
        """Call with the lock held."""
        props = None
        if expires is not None:
            left = expires - time.time()
            if left <= 0:
                self._latest.pop(topic, None)  # the broker has dropped it too
                return
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = max(1, int(left))
        link = self.link
        if link is not None and link.connected.is_set():
            link.publish(topic, payload, retain=True, props=props)

    # -- inputs -----------------------------------------------------------------------------------

    def face_seen(self, present: bool) -> None:
        """One camera frame: the sensor turns on (off) after visitor_frames frames in a row with (without)
        a face, as the playlist's visitor trigger counts them; a flicker changes nothing."""
        with self._lock:
            if present == self._present:
                self._run = 0
                return
            self._run += 1
            if self._run < max(1, self.visitor_frames()):
                return
            self._present, self._run = present, 0
        self._set(self.topics.visitor, b"ON" if present else b"OFF")

    def on_event(self, event_type: str, data: dict[str, Any]) -> None:
        state = _JOB_EVENTS.get(event_type)
        job_id = data.get("job_id")
        if state is not None and isinstance(job_id, str):
            self._job_event(event_type, state, job_id, data)
            if event_type == "job.done" and data.get("clip"):
                with self._lock:
                    self._snapshots += 1
                    number = self._snapshots
                # Off the worker's thread: a visitor's clip goes to the kiosk screen right after this event.
                threading.Thread(
                    target=self._snapshot, args=(Path(data["clip"]), number), name="snapshot", daemon=True
                ).start()
        elif event_type == "capture.accepted" and isinstance(job_id, str):
            with self._lock:
                state = self._states.get(job_id, "queued")  # the worker may have started it already
                self._capture = {
                    "state": state,
                    "job_id": job_id,
                    "source": data.get("source"),
                    "ts": round(time.time(), 3),
                }
                doc = dict(self._capture)
            self._set(self.topics.capture, doc)
        elif event_type == "capture.refused":
            doc = {
                "state": "refused",
                "job_id": None,
                "source": data.get("source"),
                "field": data.get("field"),
                "reason": data.get("reason"),
                "ts": round(time.time(), 3),
            }
            with self._lock:
                self._capture = doc
            self._set(self.topics.capture, doc)

    def _job_event(self, event_type: str, state: str, job_id: str, data: dict[str, Any]) -> None:
        doc: dict[str, Any] = {"state": state, "job_id": job_id, "ts": round(time.time(), 3)}
        if event_type == "job.progress" and data.get("total"):
            doc["progress"] = round(100.0 * data.get("done", 0) / data["total"], 1)
        for key in ("frames", "seconds", "error", "reason"):
            if key in data:
                doc[key] = data[key]
        with self._lock:
            if event_type == "job.accepted" and job_id in self._states:
                return  # the worker was quicker than the command thread: the job is already further on
            self._states[job_id] = state
            while len(self._states) > 64:
                self._states.pop(next(iter(self._states)))
            shown = self._job
            busy = shown["state"] in ("queued", "running")
            if shown["job_id"] == job_id or event_type in _TAKES_OVER or (event_type == "job.accepted" and not busy):
                self._job = doc
                self._publish_locked(self.topics.job, doc)
            capture = self._capture
            if capture is not None and capture.get("job_id") == job_id and event_type != "job.progress":
                self._capture = {**capture, **doc, "source": capture.get("source")}
                self._publish_locked(self.topics.capture, self._capture)

    def _publish_locked(self, topic: str, doc: dict[str, Any]) -> None:
        data = json.dumps(doc, default=str).encode()
        self._latest[topic] = (data, None)
        self._publish(topic, data, None)

    def _snapshot(self, clip: Path, number: int) -> None:
        try:
            jpeg = clip_snapshot(clip)
            expiry_s = self.snapshot_expiry_s(clip)
        except (ValueError, OSError) as exc:
            log.warning("no snapshot of the clip", extra=kv(clip=str(clip), error=str(exc)))
            return
        expires = None if expiry_s is None else time.time() + expiry_s
        with self._lock:
            if number != self._snapshots:
                return  # a later clip finished meanwhile: its snapshot is the one to show
            self._latest[self.topics.snapshot] = (jpeg, expires)
            self._publish(self.topics.snapshot, jpeg, expires)


# -- Home Assistant MQTT discovery -------------------------------------------------------------------

# (key, name, template, unit, device_class): the stats sensors. All are diagnostics of the device.
STATS_SENSORS = [
    ("fps", "Frame rate", "{{ value_json.fps }}", "fps", None),
    ("frame_ms_p95", "Frame time p95", "{{ (value_json.frame_ms or {}).get('p95') }}", "ms", "duration"),
    ("generator_ms_p95", "Generator time p95", "{{ (value_json.generator_ms or {}).get('p95') }}", "ms", "duration"),
    ("queue_depth", "Queue depth", "{{ value_json.queue_depth }}", None, None),
    ("cpu_percent", "CPU", "{{ value_json.cpu_percent }}", "%", None),
    ("rss_bytes", "Memory", "{{ value_json.rss_bytes }}", "B", "data_size"),
    ("temperature_c", "Temperature", "{{ value_json.temperature_c }}", "°C", "temperature"),
    ("disk_free_bytes", "Disk free", "{{ value_json.disk_free_bytes }}", "B", "data_size"),
    ("dropped_frames", "Dropped frames", "{{ value_json.dropped_frames }}", None, None),
]


def node_id(topics: Topics) -> str:
    """The device's id as Home Assistant's discovery topics and unique ids take it."""
    return f"portrait_{topics.device_id}".replace(".", "_").replace("-", "_")


def discovery_messages(
    topics: Topics,
    ha_prefix: str,
    app_version: str,
    kind: str,
    modes: list[str] | None = None,
    camera: bool = False,
) -> list[tuple[str, dict[str, Any]]]:
    """Home Assistant MQTT discovery, one retained config per entity: diagnostic sensors of the stats
    (retained, so they have a value again after Home Assistant restarts), the current job and the
    last capture, a Capture button, a select of the modes this device can run (`modes`), the last
    clip's snapshot, and with a camera a visitor binary sensor."""
    node = node_id(topics)
    device = {
        "identifiers": [node],
        "name": f"Talking Portrait {topics.device_id}",
        "model": f"Talking Portrait ({kind})",
        "manufacturer": "Talking Portrait",
        "sw_version": app_version,
    }
    common = {
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {"name": "talking-portrait", "sw_version": app_version},
    }
    messages: list[tuple[str, dict[str, Any]]] = []

    def add(component: str, key: str, config: dict[str, Any]) -> None:
        messages.append(
            (f"{ha_prefix}/{component}/{node}/{key}/config", {"unique_id": f"{node}_{key}", **config, **common})
        )

    for key, name, template, unit, device_class in STATS_SENSORS:
        config: dict[str, Any] = {
            "name": name,
            "state_topic": topics.stats,
            "value_template": template,
            "state_class": "measurement",
            "entity_category": "diagnostic",
        }
        if unit:
            config["unit_of_measurement"] = unit
        if device_class:
            config["device_class"] = device_class
        add("sensor", key, config)
    add(
        "sensor",
        "job",
        {
            "name": "Job",
            "icon": "mdi:movie-open-play",
            "state_topic": topics.job,
            "value_template": "{{ value_json.state }}",
            "json_attributes_topic": topics.job,
            "device_class": "enum",
            "options": list(JOB_STATES),
        },
    )
    add(
        "sensor",
        "last_capture",
        {
            "name": "Last capture",
            "icon": "mdi:camera-account",
            "state_topic": topics.capture,
            "value_template": "{{ value_json.state }}",
            "json_attributes_topic": topics.capture,
            "device_class": "enum",
            "options": list(CAPTURE_STATES),
        },
    )
    add(
        "button",
        "capture",
        {
            "name": "Capture",
            "icon": "mdi:camera-iris",
            "command_topic": topics.command("capture"),
            "payload_press": "{}",
        },
    )
    add(
        "select",
        "mode",
        {
            "name": "Mode",
            "icon": "mdi:drama-masks",
            "command_topic": topics.command("mode"),
            "state_topic": topics.state,
            "value_template": "{{ value_json.mode }}",
            "options": list(modes or ["portrait"]),
        },
    )
    add(
        "image",
        "snapshot",
        {
            "name": "Last clip",
            "image_topic": topics.snapshot,
            "content_type": "image/jpeg",
        },
    )
    if camera:
        add(
            "binary_sensor",
            "visitor",
            {
                "name": "Visitor",
                "device_class": "occupancy",
                "state_topic": topics.visitor,
                "payload_on": "ON",
                "payload_off": "OFF",
            },
        )
    return messages
