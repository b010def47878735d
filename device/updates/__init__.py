"""Fleet updates: signed model and content bundles rolled out over MQTT.

keys.py      the key chain: an offline root key certifies signing keys and signs the revocation list;
             key files written new, 0600, never through a link
job.py       the signed documents: the update job and the rollback order, each naming its targets
machine.py   the job's state machine: the transition table and the typed, persisted records
host.py      what the updater needs from the daemon (a Protocol), and the rollback request's shape
paths.py     names from a job checked, and paths built from them only inside their folder
transfer.py  the bundle archive, chunk topics, and a resumable chunk file (partial file + bitmap)
download.py  the download itself (chunks over MQTT or HTTP(S)): retry budget, deadline, expiry
install.py   slots (current / previous symlinks switched atomically), health checks, content bundles
orders.py    ids of carried-out rollback orders, so none is replayed
manager.py   the device side: one step per state (verify, download, stage, health-check, switch),
             probation, rollback; job states published retained on portrait/<id>/jobs/<job_id>
"""
