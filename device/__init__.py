"""Talking Portrait appliance: everything that runs on the device."""

import os

# The warp solves small (~200x200) systems every frame. A multi-threaded BLAS gains nothing on
# those and its spinning threads fight the TFLite/XNNPACK threads of the face mesh: measured here,
# mirror mode went from 290 ms to 13 ms per frame with one BLAS thread. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
