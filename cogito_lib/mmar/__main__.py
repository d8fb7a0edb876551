"""Entry point: `python -m cogito_lib.mmar ...` (see `cogito_lib.mmar.cli`)."""
import sys

from .cli import main

sys.exit(main())
