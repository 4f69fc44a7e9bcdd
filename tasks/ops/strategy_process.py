"""Entry point of a strategy's own process: `python -m tasks.ops.strategy_process JOB OUT`, or
`... --wait-for-job` for a spare that reads JOB and OUT from stdin (tasks/ops/isolate.py, Spares)."""
import logging
import os
import sys

from tasks.ops.isolate import WAIT_FLAG, main, wait_for_job


def exit_now(code: int) -> None:
    """End without the interpreter's teardown once the result file is written: freeing the
    transformers, PEFT and MLflow modules took 2.0 s per strategy process (measured, AMD EPYC),
    after everything it had to do. Output and logs are flushed first. Under `accelerate launch`
    (WORLD_SIZE > 1) the normal exit stays, for gloo's shutdown."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(wait_for_job() if sys.argv[1:] == [WAIT_FLAG] else main(*sys.argv[1:3]))
