"""`python -m cli`: the `refmesh` command without the console script."""
from cli import main

main()
