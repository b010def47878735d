import sys

from export.pipeline import main

sys.exit(main())
