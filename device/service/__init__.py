"""The appliance daemon: config, persistent job queue, MQTT link, commands and the main loop.

`portrait serve --config FILE` (or `python -m device.service --config FILE`) runs `daemon.serve`.
"""
