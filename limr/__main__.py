"""``python -m limr`` is the ``limr`` command."""

from limr.cli import main

raise SystemExit(main())
