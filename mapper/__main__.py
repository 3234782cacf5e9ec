"""`python3 -m mapper ...`: the same command line as the `mapper` script."""
from .cli import entry

entry()
