"""The command line (`python -m conformance`, the `bce-conformance` script): `main` assembles the parser from one
module per command family (run.py: run, report, diff, merge; fuzz.py; accuracy.py; matrix.py; listing.py: backends,
cases; cache.py), and output.py writes reports and says how a run went. Nothing outside this package imports it."""
from .main import main

__all__ = ["main"]
