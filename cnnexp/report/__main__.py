import sys

from cnnexp.report.build import main

sys.exit(main())
