"""`python -m device.service --config FILE [--check-config]`: the daemon without the CLI."""

import sys

from device.service.daemon import main

sys.exit(main())
