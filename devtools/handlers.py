"""Load a function's ``app`` module by function name, as Lambda would.

Every function's handler module is named ``app``; loading them by file path under unique
module names lets tests, the demo and the benchmarks use several at once.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from devtools.iam_check.enforce import acting_as
from dynamo_ecs.config import DeploymentConfig, load_config
from dynamo_ecs.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = ROOT / "functions"


def function_names() -> list[str]:
    return sorted(p.name for p in FUNCTIONS_DIR.iterdir() if (p / "app.py").exists())


def load_handler_module(function: str, fresh: bool = False) -> ModuleType:
    """Import ``functions/<function>/app.py`` as module ``functions_<function>_app``."""
    name = f"functions_{function}_app"
    if not fresh and name in sys.modules:
        return sys.modules[name]
    path = FUNCTIONS_DIR / function / "app.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no handler module at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    setattr(module, "lambda_handler", _under_its_role(function, module))  # noqa: B010 - loaded by path
    return module


def _under_its_role(function: str, module: ModuleType) -> Callable[[Any, Any], Any]:
    """The handler, run as the function: its AWS calls are checked against its role (`devtools.iam_check`)."""
    handler: Callable[[Any, Any], Any] = getattr(module, "lambda_handler")  # noqa: B009 - a module loaded by path

    @functools.wraps(handler)
    def run(event: Any, context: Any) -> Any:
        with acting_as(function, _configuration(module)):
            return handler(event, context)

    return run


def _configuration(module: ModuleType) -> DeploymentConfig:
    """The function's configuration: its module's, else the environment's.

    A configuration the function itself refuses (it answers with the error) names the stack's
    resources by the defaults, so any call it still makes is checked against some role.
    """
    config = getattr(module, "CONFIG", None)
    if isinstance(config, DeploymentConfig):
        return config
    try:
        return load_config()
    except ConfigError:
        return DeploymentConfig()
