import sys

from cnnbench.cli import main

code = main()
if "cnnbench.training.distributed" in sys.modules:  # loaded only by training commands
    sys.modules["cnnbench.training.distributed"].end_process(code)  # a torchrun process ends here
raise SystemExit(code)
