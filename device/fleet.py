"""`portrait fleet`: the operator's side of fleet updates: keys, signing, publishing, staged rollouts,
signed rollbacks, the fleet's status.

It lives in the `device` package (not in `tools/`) so that an installed wheel has it without shipping a
top-level package with a generic name; it needs only paho-mqtt and device.updates, the other half of
the same protocol. `python -m tools.fleet` in a checkout runs the same code.

Broker traffic: `publish` sends the bundle once as retained messages
`portrait/fleet/bundles/<sha16>/chunk/<i>` (plus `.../info`); each device then subscribes to the
chunks it lacks, a window at a time, and the broker sends it those: about bundle size x devices out of
the broker, and once into it. `unpublish` clears the retained chunks after the rollout.
Update jobs and rollback orders are signed and name their targets (the devices, the group, or the whole
fleet the operator picked): a device refuses one that does not name it, so none can be replayed elsewhere.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.errors import BadInput
from device.updates import keys as chain
from device.updates.install import CONTENT_FORMAT, manifest, sign_manifest
from device.updates.job import TERMINAL, UpdateState, make_envelope, make_order
from device.updates.transfer import chunk_topic, pack, sha256_hex, split

DEFAULT_CHUNK = 128 * 1024  # far under Mosquitto's limits; small enough to resend cheaply
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

EXAMPLES = """\
examples:
  portrait fleet keys root --out keys/root                    (root.key offline!, root.pub -> devices)
  portrait fleet keys signing --root keys/root.key --out keys/sign1   (sign1.key, sign1.cert.json)
  portrait fleet keys revoke KEY_ID --root keys/root.key --list keys/revocations.json --publish
  portrait fleet sign BUNDLE_DIR --key keys/sign1.key
  portrait fleet rollout BUNDLE_DIR --key keys/sign1.key --cert keys/sign1.cert.json --group hall-2
  portrait fleet status --broker mqtt.example.org:8883 --tls --username operator --password-file ~/.mqtt-pw
  portrait fleet rollback --device kiosk-01 --key keys/sign1.key --cert keys/sign1.cert.json

Broker options (--broker, --prefix, credentials, TLS) go before or after the subcommand.
Exit codes: 0 ok, 1 the fleet did not do it (a failed wave, a refused order, no answer), 2 bad input
(a missing file, a bad option, an unknown device, a broker that cannot be reached or refuses us)."""


class BrokerError(Exception):
    """The broker cannot be reached, or refuses us; the message names host:port and what to check."""


# -- keys -------------------------------------------------------------------------------------------


def keys_root(prefix: Path) -> tuple[Path, Path]:
    """PREFIX.key (0600, new) and PREFIX.pub; KeyFileExists naming the file if either is there already."""
    key_path, pub_path = prefix.with_suffix(".key"), prefix.with_suffix(".pub")
    chain.refuse_existing(key_path, pub_path)
    key = chain.Ed25519PrivateKey.generate()
    chain.write_private(key_path, key)
    chain.write_public(pub_path, key.public_key())
    return key_path, pub_path


def keys_signing(prefix: Path, root_key: Path, valid_days: float = 730.0) -> tuple[Path, Path]:
    """PREFIX.key (0600, new) and PREFIX.cert.json, its certificate signed by the root key."""
    key_path, cert_path = prefix.with_suffix(".key"), prefix.with_name(prefix.name + ".cert.json")
    chain.refuse_existing(key_path, cert_path)
    root = chain.load_private(root_key)
    key = chain.Ed25519PrivateKey.generate()
    chain.write_private(key_path, key)
    cert = chain.certify(root, key.public_key(), valid_days)
    chain.create_new(cert_path, (json.dumps(cert, indent=2) + "\n").encode(), 0o644)
    return key_path, cert_path


def keys_revoke(key_ids: list[str], root_key: Path, list_path: Path) -> dict[str, Any]:
    root = chain.load_private(root_key)
    revoked: list[str] = []
    serial = 0
    if list_path.is_file():
        old = json.loads(list_path.read_text())
        revoked, serial = list(old["body"]["revoked"]), int(old["body"]["serial"]) + 1
    doc = chain.revocation_list(root, revoked + key_ids, serial)
    list_path.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


# -- bundles ----------------------------------------------------------------------------------------


def bundle_kind(folder: Path) -> str:
    return "content" if manifest(folder).get("format") == CONTENT_FORMAT else "model"


def bundle_info(
    folder: Path, chunk_bytes: int = DEFAULT_CHUNK, prefix: str = "portrait"
) -> tuple[dict[str, Any], list[bytes]]:
    doc = manifest(folder)  # first: a folder that is no bundle is named as such
    data = pack(folder)
    digest = sha256_hex(data)
    chunks = split(data, chunk_bytes)
    info = {
        "kind": bundle_kind(folder),
        "name": doc["name"],
        "version": doc["version"],
        "size": len(data),
        "sha256": digest,
        "topic": f"{prefix}/fleet/bundles/{digest[:16]}",
        "chunk_bytes": chunk_bytes,
        "chunks": [sha256_hex(c) for c in chunks],
        "device_kinds": doc.get("device_kinds", []),
    }
    return info, chunks


def content_manifest(
    folder: Path,
    name: str,
    version: str,
    scripts: list[dict[str, Any]],
    playlist: list[str] | None = None,
    portraits: list[str] | None = None,
    device_kinds: list[str] | None = None,
    schedule: dict[str, Any] | None = None,
) -> Path:
    """Write manifest.json for a content bundle: every file with its sha256 and size; sign it afterwards."""
    files = [
        {"path": str(p.relative_to(folder)), "sha256": sha256_hex(p.read_bytes()), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in ("manifest.json", "signature.json")
    ]
    images = [f["path"] for f in files if Path(f["path"]).suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")]
    doc = {
        "format": CONTENT_FORMAT,
        "kind": "content",
        "name": name,
        "version": version,
        "device_kinds": device_kinds or [],
        "files": files,
        "portraits": portraits or images,
        "scripts": scripts,
        "playlist": playlist if playlist is not None else [s["id"] for s in scripts],
        "schedule": schedule or {},
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def targets_of(devices: list[str] | None = None, group: str | None = None, fleet: bool = False) -> dict[str, Any]:
    """The `targets` a signed job or order carries: device ids, a group, or the whole fleet, said explicitly."""
    if fleet:
        return {"fleet": True}
    doc: dict[str, Any] = {}
    if devices:
        doc["devices"] = sorted(set(devices))
    if group:
        doc["groups"] = [group]
    if not doc:
        raise ValueError("name the targets: devices, a group, or the whole fleet")
    return doc


def make_job(
    info: dict[str, Any],
    signing_key: Any,
    cert: dict[str, Any],
    *,
    targets: dict[str, Any],
    job_id: str | None = None,
    expires_s: float = 86400.0,
    device_kinds: list[str] | None = None,
    group: str | None = None,
    rollout: str | None = None,
    revocations: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A signed envelope for one rollout to `targets` (see targets_of); `overrides` change job fields
    (tests forge bad jobs with it)."""
    now = time.time()
    job = {
        "id": job_id or f"{info['name']}-{info['version']}-{uuid.uuid4().hex[:6]}",
        "kind": info["kind"],
        "name": info["name"],
        "version": info["version"],
        "size": info["size"],
        "sha256": info["sha256"],
        "source": {
            "type": "mqtt",
            "topic": info["topic"],
            "chunk_bytes": info["chunk_bytes"],
            "chunks": info["chunks"],
        },
        "issued": round(now, 3),
        "expires": round(now + expires_s, 3),
        "device_kinds": device_kinds if device_kinds is not None else info.get("device_kinds", []),
        "targets": targets,
        "group": group,
        "rollout": rollout,
    }
    job.update(overrides)
    return make_envelope(job, signing_key, cert, revocations)


def make_rollback(
    kind: str,
    signing_key: Any,
    cert: dict[str, Any],
    *,
    targets: dict[str, Any],
    expires_s: float = 600.0,
    order_id: str | None = None,
    revocations: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A signed rollback order for `targets`: short-lived and with a fresh id, so it cannot be replayed."""
    now = time.time()
    order = {
        "action": "rollback",
        "id": order_id or f"rollback-{kind}-{uuid.uuid4().hex[:12]}",
        "kind": kind,
        "targets": targets,
        "issued": round(now, 3),
        "expires": round(now + expires_s, 3),
    }
    order.update(overrides)
    return make_order(order, signing_key, cert, revocations)


# -- the broker -------------------------------------------------------------------------------------


class FleetClient:
    """One paho connection: publishes, sends commands, and keeps the fleet's retained picture.

    Raises BrokerError, naming host:port, when the broker cannot be reached, refuses the credentials or
    fails the TLS handshake."""

    def __init__(
        self,
        host: str = "localhost",
        port: int = 1883,
        prefix: str = "portrait",
        username: str | None = None,
        password: str | None = None,
        *,
        tls: bool = False,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.prefix = prefix
        self.where = f"{host}:{port}"
        self.devices: dict[str, dict[str, Any]] = {}
        self.replies: dict[str, dict[str, Any]] = {}  # the latest answer per command token
        self.answers: dict[str, list[dict[str, Any]]] = {}  # every answer (a group command gets several)
        self.cond = threading.Condition()
        self.session = uuid.uuid4().hex[:8]
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{self.session}", protocol=paho.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        if tls or ca_file or cert_file:
            try:
                self.client.tls_set(
                    ca_certs=str(ca_file) if ca_file else None,
                    certfile=str(cert_file) if cert_file else None,
                    keyfile=str(key_file) if key_file else None,
                    tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except (OSError, ssl.SSLError) as exc:
                raise BrokerError(
                    f"TLS to {self.where}: cannot load the CA file or client certificate: {exc}"
                ) from None
        self.client.connect_timeout = connect_timeout
        self.client.max_inflight_messages_set(64)
        self.client.max_queued_messages_set(0)
        ready = threading.Event()
        refused: list[str] = []
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()

        def on_connect(client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                refused.append(str(reason))
                ready.set()
                return
            p = self.prefix
            client.subscribe(
                [
                    (f"{p}/+/availability", 1),
                    (f"{p}/+/state", 1),
                    (f"{p}/+/stats", 0),
                    (f"{p}/+/jobs/+", 1),
                    (f"fleet/replies/{self.session}/+", 1),
                ]
            )

        self.client.on_connect = on_connect
        try:
            self.client.connect(host, port, keepalive=30)
        except ssl.SSLError as exc:  # before OSError: it is one
            detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            raise BrokerError(
                f"TLS handshake with the MQTT broker at {self.where} failed: {detail} "
                "(--ca-file names the CA that signed the broker's certificate)"
            ) from None
        except socket.gaierror as exc:
            raise BrokerError(
                f"cannot resolve the MQTT broker host {host!r} (--broker {self.where}): {exc.strerror}"
            ) from None
        except OSError as exc:
            raise BrokerError(
                f"cannot reach the MQTT broker at {self.where}: {exc.strerror or exc} "
                "(is it running? --broker HOST:PORT names another)"
            ) from None
        self.client.loop_start()
        if not ready.wait(connect_timeout):
            self.close()
            raise BrokerError(
                f"no answer from the MQTT broker at {self.where} within {connect_timeout:g} s "
                "(a TLS port needs --tls, a plain one must not have it)"
            )
        if refused:
            self.close()
            raise BrokerError(
                f"the MQTT broker at {self.where} refused the connection: {refused[0]} "
                "(check --username and --password-file)"
            )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        try:
            doc: Any = json.loads(msg.payload) if msg.payload and parts[-1] != "availability" else msg.payload.decode()
        except ValueError:
            return
        with self.cond:
            if parts[0] == "fleet":
                self.replies[parts[-1]] = doc
                self.answers.setdefault(parts[-1], []).append(doc)
            elif len(parts) >= 3 and parts[1] not in ("fleet", "group"):
                dev = self.devices.setdefault(parts[1], {"jobs": {}})
                if parts[2] == "jobs" and len(parts) == 4 and isinstance(doc, dict):
                    dev["jobs"][parts[3]] = doc
                elif parts[2] in ("availability", "state", "stats"):
                    dev[parts[2]] = doc
            self.cond.notify_all()

    def publish_wait(
        self, topic: str, payload: bytes | str, retain: bool = False, qos: int = 1, props: Properties | None = None
    ) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain, properties=props).wait_for_publish(30)

    def publish_bundle(self, info: dict[str, Any], chunks: list[bytes]) -> None:
        sent = [self.client.publish(chunk_topic(info["topic"], i), c, qos=1, retain=True) for i, c in enumerate(chunks)]
        for item in sent:
            item.wait_for_publish(60)
        self.publish_wait(f"{info['topic']}/info", json.dumps(info), retain=True)

    def unpublish(self, info: dict[str, Any]) -> None:
        for i in range(len(info["chunks"])):
            self.client.publish(chunk_topic(info["topic"], i), b"", qos=1, retain=True)
        self.publish_wait(f"{info['topic']}/info", b"", retain=True)

    def command(self, target: str, verb: str, doc: dict[str, Any], group: bool = False) -> str:
        """Send a command; its answers arrive in replies/answers under the token returned."""
        token = uuid.uuid4().hex[:12]
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"fleet/replies/{self.session}/{token}"
        props.CorrelationData = token.encode()
        where = f"{self.prefix}/group/{target}" if group else f"{self.prefix}/{target}"
        self.publish_wait(f"{where}/cmd/{verb}", json.dumps(doc), props=props)
        return token

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def known(self, settle_s: float = 1.0) -> dict[str, dict[str, Any]]:
        """Devices that have published a state (retained: every device that ever ran, online or not)."""
        time.sleep(settle_s)  # the retained states arrive right after subscribing
        with self.cond:
            return {k: v for k, v in self.devices.items() if "state" in v}

    def job_state(self, device: str, job_id: str) -> dict[str, Any] | None:
        with self.cond:
            return self.devices.get(device, {}).get("jobs", {}).get(job_id)

    def refresh_stats(self, devices: list[str], timeout: float) -> None:
        """Ask each device for its `status`: its latest stats sample, which is not retained on the broker."""
        tokens = {d: self.command(d, "status", {}) for d in devices}
        self.wait(lambda: all(t in self.replies for t in tokens.values()), timeout)
        with self.cond:
            for device, token in tokens.items():
                stats = (self.replies.get(token) or {}).get("stats")
                held = self.devices.setdefault(device, {"jobs": {}}).get("stats") or {}
                if isinstance(stats, dict) and stats.get("ts", 0) >= held.get("ts", 0):
                    self.devices[device]["stats"] = stats


# -- rollout ----------------------------------------------------------------------------------------


def select(
    fleet: FleetClient, devices: list[str] | None = None, group: str | None = None, percent: float | None = None
) -> list[str]:
    if devices:
        return list(devices)
    known = fleet.known()
    ids = sorted(d for d, v in known.items() if group is None or group in (v["state"].get("groups") or []))
    if percent is not None:
        # Deterministic: the same devices for the same percentage; a stable hash spreads them.
        ids = sorted(ids, key=lambda d: sha256_hex(d.encode()))[: max(1, round(len(ids) * percent / 100))]
    return ids


def rollout(
    fleet: FleetClient,
    envelope: dict[str, Any],
    targets: list[str],
    canary: int = 1,
    success_ratio: float = 1.0,
    max_failures: int = 0,
    batch: int = 0,
    timeout_s: float = 600.0,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Canary first, then the rest (in batches) while the success ratio holds; stop past max_failures."""
    job_id = envelope["job"]["id"]
    done: dict[str, str] = {}
    waves = [
        targets[:canary],
        *[
            targets[canary:][i : i + (batch or len(targets))]
            for i in range(0, len(targets) - canary, batch or len(targets))
        ],
    ]
    aborted = None
    for n, wave in enumerate(w for w in waves if w):
        for device in wave:
            fleet.command(device, "update", envelope)

        def finished(wave: list[str] = wave) -> bool:
            return all((fleet.job_state(d, job_id) or {}).get("state") in [str(s) for s in TERMINAL] for d in wave)

        fleet.wait(finished, timeout_s)
        for device in wave:
            done[device] = (fleet.job_state(device, job_id) or {}).get("state", "TIMEOUT")
        ok = sum(1 for s in done.values() if s == UpdateState.SUCCEEDED)
        failures = len(done) - ok
        log(f"wave {n} ({'canary' if n == 0 else 'rest'}): {', '.join(f'{d}={done[d]}' for d in wave)}")
        if ok / len(done) < success_ratio or failures > max_failures:
            aborted = f"success {ok}/{len(done)} below {success_ratio:.0%} or {failures} failures > {max_failures}"
            log(f"rollout aborted: {aborted}; {len(targets) - len(done)} devices untouched")
            break
    return {"job_id": job_id, "results": done, "aborted": aborted, "untouched": [d for d in targets if d not in done]}


# -- status -----------------------------------------------------------------------------------------


def _number(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if not isinstance(value, int | float) else f"{value / scale:.{digits}f}"


def status_table(fleet: FleetClient) -> str:
    rows = [("device", "avail", "model", "content", "job", "state", "progress", "fps", "cpu%", "mem MB", "temp C")]
    with fleet.cond:
        devices = dict(fleet.devices)
    for dev, v in sorted(devices.items()):
        state, stats = v.get("state") or {}, v.get("stats") or {}
        installed = state.get("installed") or {}
        model, content = installed.get("model") or {}, installed.get("content") or {}
        jobs = sorted(v.get("jobs", {}).values(), key=lambda j: j.get("updated") or 0)
        job = jobs[-1] if jobs else {}
        prog = job.get("progress") or {}
        progress = f"{prog.get('chunks')}/{prog.get('total')}" if prog.get("total") else ""
        rows.append(
            (
                dev,
                str(v.get("availability", "?")),
                f"{model.get('name', '-')} {model.get('version', '')}",
                str(content.get("version", "-")),
                str(job.get("job_id", "-")),
                str(job.get("state", "-")),
                progress,
                _number(stats.get("fps")),
                _number(stats.get("cpu_percent")),
                _number(stats.get("rss_bytes"), 2**20, 0),
                _number(stats.get("temperature_c")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def status_doc(fleet: FleetClient) -> dict[str, Any]:
    """The fleet as the devices publish it: availability, state, latest stats and update jobs per device."""
    with fleet.cond:
        devices = {
            d: {
                "availability": v.get("availability"),
                "state": v.get("state"),
                "stats": v.get("stats"),
                "jobs": dict(v.get("jobs", {})),
            }
            for d, v in sorted(fleet.devices.items())
        }
    return {"broker": fleet.where, "prefix": fleet.prefix, "devices": devices}


# -- command line -----------------------------------------------------------------------------------


def _broker_address(text: str, tls: bool) -> tuple[str, int]:
    """HOST[:PORT] or [IPv6]:PORT; the port defaults to 1883, or 8883 with TLS."""
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host:
        raise BadInput(f"--broker {text!r}: no host (HOST[:PORT], e.g. localhost:1883)")
    if not port:
        return host, 8883 if tls else 1883
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"--broker {text!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def _client(args: argparse.Namespace) -> FleetClient:
    tls = bool(args.tls or args.ca_file or args.tls_cert)
    host, port = _broker_address(args.broker, tls)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise BadInput("--tls-cert and --tls-key go together (the client certificate and its private key)")
    password = None
    if args.password_file is not None:
        if not args.username:
            raise BadInput(f"--password-file {args.password_file}: give --username too")
        password = _read(args.password_file, "--password-file").decode().strip()
    return FleetClient(
        host,
        port,
        args.prefix,
        args.username,
        password,
        tls=tls,
        ca_file=args.ca_file,
        cert_file=args.tls_cert,
        key_file=args.tls_key,
        connect_timeout=args.connect_timeout,
    )


def _read(path: Path, option: str) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise BadInput(f"{option} {path}: cannot read it ({exc.strerror})") from None


def _read_json(path: Path, option: str) -> Any:
    try:
        return json.loads(_read(path, option))
    except ValueError as exc:
        raise BadInput(f"{option} {path}: not JSON ({exc})") from None


def _load_key(path: Path, option: str) -> Any:
    _read(path, option)  # a missing file is named with its option
    try:
        return chain.load_private(path)
    except (ValueError, chain.ChainError) as exc:
        raise BadInput(f"{option} {path}: not an Ed25519 private key in PEM ({exc})") from None


def _connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The broker options, on the main parser (with defaults) and on each subcommand that connects
    (without: a value given before the subcommand then survives, and one given after it wins)."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    g = parser.add_argument_group("broker connection (before or after the subcommand)")
    g.add_argument(
        "--broker",
        metavar="HOST[:PORT]",
        default=default("localhost"),
        help="the MQTT broker (default: localhost, port 1883, or 8883 with TLS)",
    )
    g.add_argument(
        "--prefix",
        default=default("portrait"),
        help="first topic level of the devices' topics, as in their mqtt.topic_prefix (default: portrait)",
    )
    g.add_argument("--username", metavar="NAME", default=default(None), help="user name on the broker")
    g.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        default=default(None),
        help="file holding the password (its first line); never given on the command line, where "
        "other users could read it",
    )
    g.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help="connect over TLS (implied by --ca-file and --tls-cert)",
    )
    g.add_argument(
        "--ca-file",
        type=Path,
        metavar="FILE",
        default=default(None),
        help="CA certificate(s) that signed the broker's certificate (default: the system CAs)",
    )
    g.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        default=default(None),
        help="client certificate, for brokers that require one (with --tls-key)",
    )
    g.add_argument(
        "--tls-key", type=Path, metavar="FILE", default=default(None), help="private key of the client certificate"
    )
    g.add_argument(
        "--connect-timeout",
        type=float,
        metavar="S",
        default=default(10.0),
        help="seconds to wait for the broker to answer (default: 10)",
    )


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="portrait fleet",
        allow_abbrev=False,
        formatter_class=formatter,
        epilog=EXAMPLES,
        description="The operator's side of fleet updates: keys, signing, publishing, staged rollouts,\n"
        "signed rollbacks, and the fleet's status, over the devices' MQTT broker.",
    )
    _connection_options(p, defaults=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, connects: bool, parent: Any = sub) -> argparse.ArgumentParser:
        parser = parent.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            allow_abbrev=False,
            formatter_class=formatter,
        )
        if connects:
            _connection_options(parser, defaults=False)
        return parser

    keys = command("keys", "make the root and signing keys, revoke a signing key", connects=False)
    k = keys.add_subparsers(dest="what", required=True, metavar="KIND")
    kr = command("root", "make the root key pair: the devices trust root.pub, keep root.key offline", False, k)
    kr.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="PREFIX",
        help="writes PREFIX.key (private, mode 0600) and PREFIX.pub; refuses to overwrite either",
    )
    ks = command("signing", "make a signing key and its certificate, signed by the root key", False, k)
    ks.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="PREFIX",
        help="writes PREFIX.key (private, mode 0600) and PREFIX.cert.json; refuses to overwrite either",
    )
    ks.add_argument("--root", type=Path, required=True, metavar="ROOT.key", help="the root private key")
    ks.add_argument(
        "--days", type=float, default=730.0, metavar="N", help="the certificate's validity (default: 730 days)"
    )
    kv = command("revoke", "add signing keys to the revocation list the devices check", True, k)
    kv.add_argument("key_ids", nargs="+", metavar="KEY_ID", help="key id(s) to revoke (as in the .cert.json)")
    kv.add_argument("--root", type=Path, required=True, metavar="ROOT.key", help="the root private key")
    kv.add_argument(
        "--list",
        type=Path,
        required=True,
        metavar="FILE",
        help="the revocation list to update (created if missing; its serial goes up by one)",
    )
    kv.add_argument(
        "--publish",
        action="store_true",
        help="also publish the list retained on PREFIX/fleet/revocations for the devices",
    )

    s = command("sign", "sign a bundle's manifest with a signing key (writes signature.json)", False)
    s.add_argument("bundle", type=Path, metavar="BUNDLE_DIR", help="the bundle folder (with manifest.json)")
    s.add_argument("--key", type=Path, required=True, metavar="SIGNING.key", help="the signing private key")

    for name, summary in (
        ("publish", "put a bundle's chunks retained on the broker for the devices to fetch"),
        ("unpublish", "clear a published bundle's retained chunks (after the rollout)"),
    ):
        pb = command(name, summary, True)
        pb.add_argument("bundle", type=Path, metavar="BUNDLE_DIR", help="the bundle folder (with manifest.json)")
        pb.add_argument(
            "--chunk-bytes",
            type=int,
            default=DEFAULT_CHUNK,
            metavar="N",
            help=f"bytes per retained chunk (default: {DEFAULT_CHUNK}); unpublish needs the same",
        )

    r = command("rollout", "publish a bundle and roll it out in waves: a canary first, the rest while it holds", True)
    r.add_argument("bundle", type=Path, metavar="BUNDLE_DIR", help="the signed bundle folder")
    r.add_argument("--key", type=Path, required=True, metavar="SIGNING.key", help="signing key for the job")
    r.add_argument("--cert", type=Path, required=True, metavar="CERT.json", help="its root-signed certificate")
    r.add_argument("--revocations", type=Path, metavar="FILE", help="the newest revocation list, sent with the job")
    r.add_argument(
        "--chunk-bytes",
        type=int,
        default=DEFAULT_CHUNK,
        metavar="N",
        help=f"bytes per retained chunk (default: {DEFAULT_CHUNK})",
    )
    r.add_argument("--device", nargs="+", action="extend", metavar="ID", help="these devices (repeatable)")
    r.add_argument("--group", help="the devices in this group (the job names the group)")
    r.add_argument(
        "--percent",
        type=float,
        metavar="P",
        help="this share of the group (or of the fleet with --fleet); the job names the devices drawn",
    )
    r.add_argument("--fleet", action="store_true", help="every device: the signed job says so explicitly")
    r.add_argument("--canary", type=int, default=1, metavar="N", help="devices in the first wave (default: 1)")
    r.add_argument(
        "--batch", type=int, default=0, metavar="N", help="devices per later wave (default: 0, all the rest at once)"
    )
    r.add_argument(
        "--success-ratio",
        type=float,
        default=1.0,
        metavar="R",
        help="stop when fewer of the devices so far succeed (default: 1.0, all of them)",
    )
    r.add_argument("--max-failures", type=int, default=0, metavar="N", help="stop past this many failures (default: 0)")
    r.add_argument(
        "--expires-hours",
        type=float,
        default=24.0,
        metavar="H",
        help="devices refuse the job after this (default: 24 hours)",
    )
    r.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="S",
        help="seconds to wait for each wave to finish (default: 1800)",
    )

    st = command("status", "show the fleet: availability, installed versions, the last update job, stats", True)
    st.add_argument(
        "--json",
        action="store_true",
        help="print the devices' own documents as JSON (one line per refresh with --watch)",
    )
    st.add_argument("--watch", action="store_true", help="refresh every --interval seconds until Ctrl-C")
    st.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between refreshes (default: 2)")
    st.add_argument(
        "--wait",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds to wait for the online devices' stats (default: 5)",
    )

    rb = command("rollback", "send a signed rollback order to a device or a group, and report the answers", True)
    where = rb.add_mutually_exclusive_group(required=True)
    where.add_argument("--device", metavar="ID", help="this device")
    where.add_argument("--group", help="every device in this group")
    rb.add_argument(
        "--kind",
        choices=("model", "content"),
        default="model",
        help="which bundle goes back to its previous version (default: model)",
    )
    rb.add_argument(
        "--key",
        type=Path,
        required=True,
        metavar="SIGNING.key",
        help="signing key (devices refuse an unsigned rollback)",
    )
    rb.add_argument("--cert", type=Path, required=True, metavar="CERT.json", help="its root-signed certificate")
    rb.add_argument("--revocations", type=Path, metavar="FILE", help="the newest revocation list, sent with it")
    rb.add_argument(
        "--expires-minutes",
        type=float,
        default=10.0,
        metavar="M",
        help="devices refuse the order after this (default: 10 minutes)",
    )
    rb.add_argument(
        "--wait",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds to wait for the online devices' answers (default: 15)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (BadInput, BrokerError, chain.ChainError, chain.KeyFileExists) as exc:
        print(f"portrait fleet: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "keys":
        return _keys(args)
    if args.command == "sign":
        print(f"signed: {sign_manifest(args.bundle, _load_key(args.key, '--key'))}")
        return EXIT_OK
    if args.command == "rollout" and not (args.device or args.group or args.fleet):
        raise BadInput("rollout: name the targets: --device ID..., --group G or --fleet (with --percent P for a share)")
    # Local inputs first: a missing key or a folder that is no bundle is reported before any broker traffic.
    signer = _signer(args) if args.command in ("rollout", "rollback") else None
    bundle = None
    if args.command in ("publish", "unpublish", "rollout"):
        bundle = bundle_info(args.bundle, args.chunk_bytes, args.prefix)
    fleet = _client(args)
    try:
        if args.command in ("publish", "unpublish"):
            return _publish(fleet, args, *bundle)
        if args.command == "rollout":
            return _rollout(fleet, args, signer, *bundle)
        if args.command == "status":
            return _status(fleet, args)
        return _rollback(fleet, args, signer)
    finally:
        fleet.close()


def _keys(args: argparse.Namespace) -> int:
    if args.what == "root":
        key, pub = keys_root(args.out)
        print(f"root key (keep it offline): {key}\nroot public key (device config updates.root_key): {pub}")
    elif args.what == "signing":
        _load_key(args.root, "--root")
        key, cert = keys_signing(args.out, args.root, args.days)
        print(f"signing key: {key}\ncertificate: {cert}")
    else:
        _load_key(args.root, "--root")
        doc = keys_revoke(args.key_ids, args.root, args.list)
        print(f"revocation list serial {doc['body']['serial']}: {', '.join(doc['body']['revoked'])}")
        if args.publish:
            fleet = _client(args)
            fleet.publish_wait(f"{args.prefix}/fleet/revocations", json.dumps(doc), retain=True)
            fleet.close()
            print(f"published retained on {args.prefix}/fleet/revocations at {fleet.where}")
    return EXIT_OK


Signer = tuple[Any, dict[str, Any], dict[str, Any] | None]  # signing key, its certificate, revocation list


def _signer(args: argparse.Namespace) -> Signer:
    revocations = _read_json(args.revocations, "--revocations") if args.revocations else None
    return _load_key(args.key, "--key"), _read_json(args.cert, "--cert"), revocations


def _publish(fleet: FleetClient, args: argparse.Namespace, info: dict[str, Any], chunks: list[bytes]) -> int:
    if args.command == "publish":
        fleet.publish_bundle(info, chunks)
        print(
            f"published {info['name']} {info['version']}: {info['size']} bytes in {len(chunks)} "
            f"retained chunks under {info['topic']}"
        )
    else:
        fleet.unpublish(info)
        print(f"cleared {len(chunks)} retained chunks of {info['name']} {info['version']} under {info['topic']}")
    return EXIT_OK


def _unknown(fleet: FleetClient, known: dict[str, Any], device: str) -> BadInput:
    names = ", ".join(sorted(known)[:10]) + (", ..." if len(known) > 10 else "") if known else "none"
    return BadInput(
        f"no device {device!r} on the broker at {fleet.where} (it has never published "
        f"{fleet.prefix}/{device}/state); known devices: {names}"
    )


def _rollout(
    fleet: FleetClient, args: argparse.Namespace, signer: Signer, info: dict[str, Any], chunks: list[bytes]
) -> int:
    key, cert, revocations = signer
    if args.device:
        known = fleet.known()
        for device in args.device:
            if device not in known:
                raise _unknown(fleet, known, device)
    selected = select(fleet, args.device, args.group, args.percent)
    if not selected:
        where = f"in group {args.group!r}" if args.group else "at all"
        raise BadInput(f"rollout: no devices {where} on the broker at {fleet.where}")
    # The signed job names exactly what was picked: a share is the devices it drew, not the group.
    if args.device or args.percent is not None:
        targets = targets_of(devices=selected)
    else:
        targets = targets_of(group=args.group, fleet=args.fleet)
    fleet.publish_bundle(info, chunks)
    envelope = make_job(
        info,
        key,
        cert,
        targets=targets,
        expires_s=args.expires_hours * 3600,
        group=args.group,
        revocations=revocations,
        rollout=uuid.uuid4().hex[:8],
    )
    report = rollout(
        fleet, envelope, selected, args.canary, args.success_ratio, args.max_failures, args.batch, args.timeout
    )
    print(json.dumps(report, indent=2))
    return EXIT_FAILED if report["aborted"] else EXIT_OK


def _status(fleet: FleetClient, args: argparse.Namespace) -> int:
    known = fleet.known()
    online = [d for d, v in known.items() if v.get("availability") == "online"]
    if online:
        fleet.refresh_stats(online, args.wait)  # stats are not retained: a one-shot view would have none
    while True:
        if args.json:
            print(json.dumps(status_doc(fleet), indent=None if args.watch else 2), flush=True)
        elif fleet.devices:
            print(status_table(fleet), flush=True)
        else:
            print(f"no devices on the broker at {fleet.where} (nothing under {fleet.prefix}/+/state)", flush=True)
        if not args.watch:
            return EXIT_OK
        try:
            time.sleep(args.interval)
        except KeyboardInterrupt:  # the way to leave --watch
            return EXIT_OK
        if not args.json:
            print("\033[2J\033[H", end="")


def _rollback(fleet: FleetClient, args: argparse.Namespace, signer: Signer) -> int:
    key, cert, revocations = signer
    known = fleet.known()
    if args.device:
        if args.device not in known:
            raise _unknown(fleet, known, args.device)
        members = [args.device]
    else:
        members = sorted(d for d, v in known.items() if args.group in (v["state"].get("groups") or []))
        if not members:
            raise BadInput(f"no device on the broker at {fleet.where} is in group {args.group!r}")
    online = [d for d in members if known[d].get("availability") == "online"]
    offline = [d for d in members if d not in online]
    targets = targets_of(devices=[args.device] if args.device else None, group=args.group)
    order = make_rollback(
        args.kind, key, cert, targets=targets, expires_s=args.expires_minutes * 60, revocations=revocations
    )
    token = fleet.command(args.group or args.device, "rollback", order, group=bool(args.group))
    where = f"group {args.group} ({len(members)} devices)" if args.group else args.device
    print(f"rollback of {args.kind} sent to {where} (order {order['order']['id']})")
    if online:
        fleet.wait(lambda: len(fleet.answers.get(token, [])) >= len(online), args.wait)
    with fleet.cond:
        answers = list(fleet.answers.get(token, []))
    for answer in answers:
        if answer.get("ok"):
            restored = answer.get("restored") or {}
            print(
                f"rolled back: {answer.get('kind', args.kind)} is now {restored.get('name', '?')} "
                f"{restored.get('version', '?')}"
            )
        else:
            print(f"refused: {(answer.get('error') or {}).get('message', answer)}")
        print(json.dumps(answer, indent=2))
    if offline:
        expires = time.strftime("%H:%M:%S UTC", time.gmtime(order["order"]["expires"]))
        print(
            f"offline: {', '.join(offline)}: the order waits on the broker and runs on return, if before it "
            f"expires at {expires}"
        )
    if len(answers) < len(online):
        print(
            f"no answer within {args.wait:g} s from {len(online) - len(answers)} of the {len(online)} online device(s)",
            file=sys.stderr,
        )
    confirmed = bool(answers) and all(a.get("ok") for a in answers) and len(answers) >= len(online)
    return EXIT_OK if confirmed else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
