import sys

from av_td3.analysis.validate.cli import main

sys.exit(main())
