from lcbench.cli import main

raise SystemExit(main())
