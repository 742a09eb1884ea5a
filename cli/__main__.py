"""`python -m cli`: the quota command line."""
from cli.main import run

run()
