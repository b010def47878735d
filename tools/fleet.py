"""The operator's side of fleet updates: keys, signing, publishing, staged rollouts, signed rollbacks.

    python -m tools.fleet keys root --out keys/root                  (root.key offline!, root.pub -> devices)
    python -m tools.fleet keys signing --root keys/root.key --out keys/sign1   (sign1.key, sign1.cert.json)
    python -m tools.fleet keys revoke KEY_ID --root keys/root.key --list keys/revocations.json [--broker H:P]
    python -m tools.fleet sign BUNDLE_DIR --key keys/sign1.key
    python -m tools.fleet publish BUNDLE_DIR [--chunk-bytes 131072]          (retained chunks on the broker)
    python -m tools.fleet rollout BUNDLE_DIR --key keys/sign1.key --cert keys/sign1.cert.json \
        (--device ID ... | --group G | --percent P | --fleet) [--canary 1] [--success-ratio 1.0] [--max-failures 0]
    python -m tools.fleet status [--watch]                                   (live table of the fleet)
    python -m tools.fleet rollback (--group G | --device ID) --key keys/sign1.key --cert keys/sign1.cert.json \
        [--kind model|content] [--expires-minutes 10]
    python -m tools.fleet unpublish BUNDLE_DIR

Broker traffic: `publish` sends the bundle once as retained messages
`portrait/fleet/bundles/<sha16>/chunk/<i>` (plus `.../info`); each device then subscribes to the
chunks it lacks, a window at a time, and the broker sends it those: about bundle size x devices out of
the broker, and once into it. `unpublish` clears the retained chunks after the rollout.
Update jobs and rollback orders are signed and name their targets (the devices, the group, or the whole
fleet the operator picked): a device refuses one that does not name it, so none can be replayed elsewhere.
Common options: --broker HOST:PORT (default localhost:1883), --prefix portrait.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.updates import keys as chain
from device.updates.install import CONTENT_FORMAT, manifest, sign_manifest
from device.updates.job import TERMINAL, UpdateState, make_envelope, make_order
from device.updates.transfer import chunk_topic, pack, sha256_hex, split

DEFAULT_CHUNK = 128 * 1024  # far under Mosquitto's limits; small enough to resend cheaply


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


def bundle_info(folder: Path, chunk_bytes: int = DEFAULT_CHUNK,
                prefix: str = "portrait") -> tuple[dict[str, Any], list[bytes]]:
    data = pack(folder)
    doc = manifest(folder)
    digest = sha256_hex(data)
    chunks = split(data, chunk_bytes)
    info = {"kind": bundle_kind(folder), "name": doc["name"], "version": doc["version"], "size": len(data),
            "sha256": digest, "topic": f"{prefix}/fleet/bundles/{digest[:16]}", "chunk_bytes": chunk_bytes,
            "chunks": [sha256_hex(c) for c in chunks], "device_kinds": doc.get("device_kinds", [])}
    return info, chunks


def content_manifest(folder: Path, name: str, version: str, scripts: list[dict[str, Any]],
                     playlist: list[str] | None = None, portraits: list[str] | None = None,
                     device_kinds: list[str] | None = None, schedule: dict[str, Any] | None = None) -> Path:
    """Write manifest.json for a content bundle: every file with its sha256 and size; sign it afterwards."""
    files = [{"path": str(p.relative_to(folder)), "sha256": sha256_hex(p.read_bytes()), "bytes": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in ("manifest.json", "signature.json")]
    images = [f["path"] for f in files if Path(f["path"]).suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")]
    doc = {"format": CONTENT_FORMAT, "kind": "content", "name": name, "version": version,
           "device_kinds": device_kinds or [], "files": files, "portraits": portraits or images,
           "scripts": scripts, "playlist": playlist if playlist is not None else [s["id"] for s in scripts],
           "schedule": schedule or {}}
    path = folder / "manifest.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def targets_of(devices: list[str] | None = None, group: str | None = None,
               fleet: bool = False) -> dict[str, Any]:
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


def make_job(info: dict[str, Any], signing_key: Any, cert: dict[str, Any], *, targets: dict[str, Any],
             job_id: str | None = None, expires_s: float = 86400.0, device_kinds: list[str] | None = None,
             group: str | None = None, rollout: str | None = None, revocations: dict[str, Any] | None = None,
             **overrides: Any) -> dict[str, Any]:
    """A signed envelope for one rollout to `targets` (see targets_of); `overrides` change job fields
    (tests forge bad jobs with it)."""
    now = time.time()
    job = {
        "id": job_id or f"{info['name']}-{info['version']}-{uuid.uuid4().hex[:6]}",
        "kind": info["kind"], "name": info["name"], "version": info["version"], "size": info["size"],
        "sha256": info["sha256"],
        "source": {"type": "mqtt", "topic": info["topic"], "chunk_bytes": info["chunk_bytes"],
                   "chunks": info["chunks"]},
        "issued": round(now, 3), "expires": round(now + expires_s, 3),
        "device_kinds": device_kinds if device_kinds is not None else info.get("device_kinds", []),
        "targets": targets, "group": group, "rollout": rollout,
    }
    job.update(overrides)
    return make_envelope(job, signing_key, cert, revocations)


def make_rollback(kind: str, signing_key: Any, cert: dict[str, Any], *, targets: dict[str, Any],
                  expires_s: float = 600.0, order_id: str | None = None,
                  revocations: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """A signed rollback order for `targets`: short-lived and with a fresh id, so it cannot be replayed."""
    now = time.time()
    order = {"action": "rollback", "id": order_id or f"rollback-{kind}-{uuid.uuid4().hex[:12]}", "kind": kind,
             "targets": targets, "issued": round(now, 3), "expires": round(now + expires_s, 3)}
    order.update(overrides)
    return make_order(order, signing_key, cert, revocations)


# -- the broker -------------------------------------------------------------------------------------

class FleetClient:
    """One paho connection: publishes, sends commands, and keeps the fleet's retained picture."""

    def __init__(self, host: str = "localhost", port: int = 1883, prefix: str = "portrait",
                 username: str | None = None, password: str | None = None) -> None:
        self.prefix = prefix
        self.devices: dict[str, dict[str, Any]] = {}
        self.replies: dict[str, dict[str, Any]] = {}
        self.cond = threading.Condition()
        self.session = uuid.uuid4().hex[:8]
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{self.session}",
                                  protocol=paho.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(64)
        self.client.max_queued_messages_set(0)
        ready = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()

        def on_connect(client: paho.Client, *args: Any) -> None:
            p = self.prefix
            client.subscribe([(f"{p}/+/availability", 1), (f"{p}/+/state", 1), (f"{p}/+/stats", 0),
                              (f"{p}/+/jobs/+", 1), (f"fleet/replies/{self.session}/+", 1)])

        self.client.on_connect = on_connect
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not ready.wait(10):
            raise TimeoutError(f"no SUBACK from the broker at {host}:{port}")

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
            elif len(parts) >= 3 and parts[1] not in ("fleet", "group"):
                dev = self.devices.setdefault(parts[1], {"jobs": {}})
                if parts[2] == "jobs" and len(parts) == 4 and isinstance(doc, dict):
                    dev["jobs"][parts[3]] = doc
                elif parts[2] in ("availability", "state", "stats"):
                    dev[parts[2]] = doc
            self.cond.notify_all()

    def publish_wait(self, topic: str, payload: bytes | str, retain: bool = False, qos: int = 1,
                     props: Properties | None = None) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain, properties=props).wait_for_publish(30)

    def publish_bundle(self, info: dict[str, Any], chunks: list[bytes]) -> None:
        sent = [self.client.publish(chunk_topic(info["topic"], i), c, qos=1, retain=True)
                for i, c in enumerate(chunks)]
        for item in sent:
            item.wait_for_publish(60)
        self.publish_wait(f"{info['topic']}/info", json.dumps(info), retain=True)

    def unpublish(self, info: dict[str, Any]) -> None:
        for i in range(len(info["chunks"])):
            self.client.publish(chunk_topic(info["topic"], i), b"", qos=1, retain=True)
        self.publish_wait(f"{info['topic']}/info", b"", retain=True)

    def command(self, target: str, verb: str, doc: dict[str, Any], group: bool = False) -> str:
        token = uuid.uuid4().hex[:12]
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"fleet/replies/{self.session}/{token}"
        props.CorrelationData = token.encode()
        where = f"{self.prefix}/group/{target}" if group else f"{self.prefix}/{target}"
        self.publish_wait(f"{where}/cmd/{verb}", json.dumps(doc), props=props)
        return token

    def wait(self, predicate: Any, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def known(self, settle_s: float = 1.0) -> dict[str, dict[str, Any]]:
        time.sleep(settle_s)  # the retained states arrive right after subscribing
        with self.cond:
            return {k: v for k, v in self.devices.items() if "state" in v}

    def job_state(self, device: str, job_id: str) -> dict[str, Any] | None:
        with self.cond:
            return self.devices.get(device, {}).get("jobs", {}).get(job_id)


# -- rollout ----------------------------------------------------------------------------------------

def select(fleet: FleetClient, devices: list[str] | None = None, group: str | None = None,
           percent: float | None = None) -> list[str]:
    if devices:
        return list(devices)
    known = fleet.known()
    ids = sorted(d for d, v in known.items() if group is None or group in (v["state"].get("groups") or []))
    if percent is not None:
        # Deterministic: the same devices for the same percentage; a stable hash spreads them.
        ids = sorted(ids, key=lambda d: sha256_hex(d.encode()))[: max(1, round(len(ids) * percent / 100))]
    return ids


def rollout(fleet: FleetClient, envelope: dict[str, Any], targets: list[str], canary: int = 1,
            success_ratio: float = 1.0, max_failures: int = 0, batch: int = 0, timeout_s: float = 600.0,
            log: Any = print) -> dict[str, Any]:
    """Canary first, then the rest (in batches) while the success ratio holds; stop past max_failures."""
    job_id = envelope["job"]["id"]
    done: dict[str, str] = {}
    waves = [targets[:canary], *[targets[canary:][i:i + (batch or len(targets))]
                                 for i in range(0, len(targets) - canary, batch or len(targets))]]
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
    return {"job_id": job_id, "results": done, "aborted": aborted,
            "untouched": [d for d in targets if d not in done]}


def status_table(fleet: FleetClient) -> str:
    rows = [("device", "avail", "model", "content", "job", "state", "progress", "fps", "cpu%")]
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
        rows.append((dev, str(v.get("availability", "?")), f"{model.get('name', '-')} {model.get('version', '')}",
                     str(content.get("version", "-")), str(job.get("job_id", "-")), str(job.get("state", "-")),
                     progress, str(stats.get("fps", "-")), str(stats.get("cpu_percent", "-"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


# -- command line -----------------------------------------------------------------------------------

def _client(args: argparse.Namespace) -> FleetClient:
    host, _, port = args.broker.partition(":")
    return FleetClient(host, int(port or 1883), args.prefix)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", default="localhost:1883")
    p.add_argument("--prefix", default="portrait")
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keys").add_subparsers(dest="what", required=True)
    kr = k.add_parser("root")
    kr.add_argument("--out", type=Path, required=True)
    ks = k.add_parser("signing")
    ks.add_argument("--out", type=Path, required=True)
    ks.add_argument("--root", type=Path, required=True)
    ks.add_argument("--days", type=float, default=730.0)
    kv = k.add_parser("revoke")
    kv.add_argument("key_ids", nargs="+")
    kv.add_argument("--root", type=Path, required=True)
    kv.add_argument("--list", type=Path, required=True)
    kv.add_argument("--publish", action="store_true", help="also publish it retained for the devices")
    s = sub.add_parser("sign")
    s.add_argument("bundle", type=Path)
    s.add_argument("--key", type=Path, required=True)
    for name in ("publish", "unpublish"):
        pb = sub.add_parser(name)
        pb.add_argument("bundle", type=Path)
        pb.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK)
    r = sub.add_parser("rollout")
    r.add_argument("bundle", type=Path)
    r.add_argument("--key", type=Path, required=True)
    r.add_argument("--cert", type=Path, required=True)
    r.add_argument("--revocations", type=Path)
    r.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK)
    r.add_argument("--device", nargs="*", help="these devices")
    r.add_argument("--group", help="the devices in this group")
    r.add_argument("--percent", type=float, help="this share of the group (or of the fleet with --fleet)")
    r.add_argument("--fleet", action="store_true", help="every device: the signed job says so explicitly")
    r.add_argument("--canary", type=int, default=1)
    r.add_argument("--batch", type=int, default=0)
    r.add_argument("--success-ratio", type=float, default=1.0)
    r.add_argument("--max-failures", type=int, default=0)
    r.add_argument("--expires-hours", type=float, default=24.0)
    r.add_argument("--timeout", type=float, default=1800.0)
    st = sub.add_parser("status")
    st.add_argument("--watch", action="store_true")
    rb = sub.add_parser("rollback")
    rb.add_argument("--group")
    rb.add_argument("--device")
    rb.add_argument("--kind", choices=("model", "content"), default="model")
    rb.add_argument("--key", type=Path, required=True, help="signing key (devices refuse an unsigned rollback)")
    rb.add_argument("--cert", type=Path, required=True, help="its root-signed certificate")
    rb.add_argument("--revocations", type=Path)
    rb.add_argument("--expires-minutes", type=float, default=10.0, help="the order is refused after this")
    rb.add_argument("--wait", type=float, default=15.0, help="seconds to wait for a --device's reply")
    args = p.parse_args(argv)

    if args.command == "keys":
        try:
            return _keys(args)
        except chain.KeyFileExists as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "sign":
        print(f"signed: {sign_manifest(args.bundle, chain.load_private(args.key))}")
        return 0
    if args.command == "rollout" and not (args.device or args.group or args.fleet):
        print("name the targets: --device ID..., --group G or --fleet (with --percent P for a share)", file=sys.stderr)
        return 2
    if args.command == "rollback" and bool(args.group) == bool(args.device):
        print("give --group or --device (one of them)", file=sys.stderr)
        return 2
    fleet = _client(args)
    try:
        return _run(fleet, args)
    finally:
        fleet.close()


def _keys(args: argparse.Namespace) -> int:
    if args.what == "root":
        key, pub = keys_root(args.out)
        print(f"root key (keep it offline): {key}\nroot public key (device config updates.root_key): {pub}")
    elif args.what == "signing":
        key, cert = keys_signing(args.out, args.root, args.days)
        print(f"signing key: {key}\ncertificate: {cert}")
    else:
        doc = keys_revoke(args.key_ids, args.root, args.list)
        print(f"revocation list serial {doc['body']['serial']}: {', '.join(doc['body']['revoked'])}")
        if args.publish:
            fleet = _client(args)
            fleet.publish_wait(f"{args.prefix}/fleet/revocations", json.dumps(doc), retain=True)
            fleet.close()
    return 0


def _signer(args: argparse.Namespace) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
    revocations = json.loads(args.revocations.read_text()) if args.revocations else None
    return chain.load_private(args.key), json.loads(args.cert.read_text()), revocations


def _run(fleet: FleetClient, args: argparse.Namespace) -> int:
    if args.command in ("publish", "unpublish"):
        info, chunks = bundle_info(args.bundle, args.chunk_bytes, args.prefix)
        if args.command == "publish":
            fleet.publish_bundle(info, chunks)
            print(f"published {info['name']} {info['version']}: {info['size']} bytes in {len(chunks)} "
                  f"retained chunks under {info['topic']}")
        else:
            fleet.unpublish(info)
        return 0
    if args.command == "rollout":
        key, cert, revocations = _signer(args)
        selected = select(fleet, args.device, args.group, args.percent)
        if not selected:
            print("no devices match", file=sys.stderr)
            return 2
        # The signed job names exactly what was picked: a share is the devices it drew, not the group.
        if args.device or args.percent is not None:
            targets = targets_of(devices=selected)
        else:
            targets = targets_of(group=args.group, fleet=args.fleet)
        info, chunks = bundle_info(args.bundle, args.chunk_bytes, args.prefix)
        fleet.publish_bundle(info, chunks)
        envelope = make_job(info, key, cert, targets=targets, expires_s=args.expires_hours * 3600,
                            group=args.group, revocations=revocations, rollout=uuid.uuid4().hex[:8])
        report = rollout(fleet, envelope, selected, args.canary, args.success_ratio, args.max_failures,
                         args.batch, args.timeout)
        print(json.dumps(report, indent=2))
        return 1 if report["aborted"] else 0
    if args.command == "status":
        fleet.known()
        while True:
            print(status_table(fleet))
            if not args.watch:
                return 0
            time.sleep(2.0)
            print("\033[2J\033[H", end="")
    if args.command == "rollback":
        key, cert, revocations = _signer(args)
        targets = targets_of(devices=[args.device] if args.device else None, group=args.group)
        order = make_rollback(args.kind, key, cert, targets=targets, expires_s=args.expires_minutes * 60,
                              revocations=revocations)
        token = fleet.command(args.group or args.device, "rollback", order, group=bool(args.group))
        where = f"group {args.group}" if args.group else args.device
        print(f"rollback of {args.kind} sent to {where} (order {order['order']['id']})")
        if args.device and fleet.wait(lambda: token in fleet.replies, args.wait):
            reply = fleet.replies[token]
            print(json.dumps(reply, indent=2))
            return 0 if reply.get("ok") else 1
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
