"""``python -m eqsearch``: the command line (also what ``torchrun -m eqsearch`` runs)."""

from eqsearch.app.cli import main

raise SystemExit(main())
