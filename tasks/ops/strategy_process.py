"""Entry point of a strategy's own process: `python -m tasks.ops.strategy_process JOB OUT`."""
import sys

from tasks.ops.isolate import main

if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
