"""``python -m eqsearch``: the command line (also what ``torchrun -m eqsearch`` runs)."""

from eqsearch.cli import main

raise SystemExit(main())
