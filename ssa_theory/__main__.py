from ssa_theory.cli import main

raise SystemExit(main())
