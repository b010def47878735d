"""Fleet updates (DESIGN 4.5): signed model and content bundles rolled out over MQTT.

keys.py      the key chain: an offline root key certifies signing keys and signs the revocation list
job.py       the signed update job document and its envelope
transfer.py  the bundle archive, chunk topics, and a resumable chunk download (partial file + bitmap)
install.py   slots (current / previous symlinks switched atomically), health checks, content bundles
manager.py   the device side: verify, download, stage, health-check, switch, probation, rollback,
             job states published retained on portrait/<id>/jobs/<job_id>
"""
