"""Run every benchmark module (``bench/bench_*.py``, each with ``run() -> None``) in turn.

Each benchmark prints its own ``figure: NAME VALUE UNIT`` lines; other lines are free.
``python -m bench cold_start`` runs only the named ones.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

from devtools.iam_check import enforce as iam_check


def main(argv: list[str]) -> int:
    # The figures are the output; the operator's own JSON logs only on warnings.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    iam_check.install()  # the handlers' AWS calls are checked against their roles, as in the tests
    names = argv or sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    failed = []
    for name in names:
        started = time.perf_counter()
        print(f"# bench {name}", flush=True)
        try:
            importlib.import_module(f"bench.bench_{name}").run()
        except Exception as exc:  # report and go on: one broken bench must not hide the others
            failed.append(name)
            print(f"# bench {name} FAILED: {exc!r}", flush=True)
        denied = sorted({str(v) for v in iam_check.take_violations()})
        if denied:  # the figures came from calls AWS would refuse
            failed.append(name)
            print(
                f"# bench {name} FAILED: AWS calls outside a function's role: {'; '.join(denied)}", flush=True
            )
        print(f"# bench {name} took {time.perf_counter() - started:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
