"""moto server answering one request at a time (run as a script: ``python moto_serial.py HOST PORT``).

``moto_server`` serves each request on its own thread and moto's DynamoDB checks a
condition and writes without a lock, so two concurrent conditional writes can both succeed
there. DynamoDB never lets them; tests of what the state store's lease guarantees under
concurrency need that guarantee, and get it by serving requests in turn.
"""

from __future__ import annotations

import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def main(host: str, port: int) -> None:
    run_simple(
        host,
        port,
        DomainDispatcherApplication(create_backend_app),
        threaded=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
