"""`python -m node --help`."""

from node.server import main

raise SystemExit(main())
