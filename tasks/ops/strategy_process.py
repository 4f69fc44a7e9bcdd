"""Entry point of a strategy's own process: `python -m tasks.ops.strategy_process JOB OUT`, or
`... --wait-for-job` for a spare that reads JOB and OUT from stdin (tasks/ops/isolate.py, Spares)."""
import sys

from tasks.ops.isolate import WAIT_FLAG, main, wait_for_job
from tasks.ops.quick_exit import exit_now

if __name__ == "__main__":
    exit_now(wait_for_job() if sys.argv[1:] == [WAIT_FLAG] else main(*sys.argv[1:3]))
