"""Entry point of a strategy's own process: `python -m tasks.ops.strategy_process JOB OUT`, or
`... --fork-server FD` for the server that forks one (tasks/ops/fork_server.py)."""
import sys

from tasks.ops.fork_server import FORK_SERVER_FLAG, serve
from tasks.ops.isolate import main
from tasks.ops.quick_exit import exit_now

if __name__ == "__main__":
    exit_now(serve(int(sys.argv[2])) if sys.argv[1:2] == [FORK_SERVER_FLAG] else main(*sys.argv[1:3]))
