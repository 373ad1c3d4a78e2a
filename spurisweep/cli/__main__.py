"""`python -m spurisweep.cli`."""

from . import main

main()
