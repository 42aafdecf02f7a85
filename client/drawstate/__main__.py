"""`python -m drawstate`: the `drawstate` command."""

from drawstate._cli import main

main()
