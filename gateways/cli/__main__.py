"""`python -m gateways.cli`: the `refmesh` command without the console script."""
from gateways.cli import main

main()
