"""`python -m tools.fleet` in a checkout: the operator CLI, `portrait fleet`, whose code is device/fleet.py.

It moved into the `device` package so that an installed wheel has it without a top-level `tools`
package; this name stays for scripts and tests that import or run it from a checkout.
"""

import sys

from device.fleet import *  # noqa: F403  (the same names, from their one home)
from device.fleet import main

if __name__ == "__main__":
    sys.exit(main())
