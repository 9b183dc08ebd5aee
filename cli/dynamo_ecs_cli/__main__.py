"""``python -m dynamo_ecs_cli`` is the ``dynamo-ecs`` command."""

from dynamo_ecs_cli.main import main

main()
