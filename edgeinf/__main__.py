"""`python -m edgeinf` runs the command-line interface."""

from edgeinf.cli.main import main

raise SystemExit(main())
