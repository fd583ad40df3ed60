import sys

from mmm_assets.cli import main

sys.exit(main())
