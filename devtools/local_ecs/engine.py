"""The one substitution the local runner makes in a GPU container's command: the engine.

There is no GPU and no vLLM here, so `python3 -m dynamo.vllm ...` becomes Dynamo's own mock
engine, `python -m dynamo.mocker ...`, which runs the same runtime, registration, router,
KV events and request plane. Everything else in the command is run as written by a real
shell: `cd`, `&`, `&&`, `python -m dynamo.frontend` and its flags. The mapping of the
engine's arguments:

- ``--model X`` (a Hugging Face id) becomes ``--model-path <tiny model dir> --model-name X``:
  nothing can be downloaded here; ``--model /a/path`` (a directory in the container, e.g. the
  model weights a host volume mounts; `containers.map_paths` has already turned a mounted
  path into its local directory) becomes ``--model-path /a/path``, the files there as they
  are: a path that does not exist or holds no model makes the mocker exit as the real
  worker does ("unable to extract config.json", "Model snapshots ... not found");
- ``--served-model-name N`` (vLLM's) becomes the mocker's ``--model-name N``: the name the
  worker registers, instead of ``--model``'s;
- ``--disaggregation-mode`` and ``--is-prefill-worker`` are kept, after checking that the
  image's release line accepts them (`dynamo_ecs.dynamo_release`): the mocker accepts both
  on every release, the real engine does not;
- ``--kv-transfer-config`` must be JSON (vLLM parses it) and is dropped: NIXL transfers
  need GPUs; on a release that needs it for disaggregation, a disaggregated worker without
  it is refused, as the real worker fails;
- vLLM-only flags the mocker lacks (``--enforce-eager`` ...) are dropped; flags both know
  are kept; any other flag is refused, since nothing here can say the real engine takes it.

The model load. ``dynamo.vllm`` fetches the model before its runtime (and its system server)
starts and registers its endpoint only once the engine has loaded it; the mocker registers at
once and only holds requests for its ``--startup-time`` (its system ``/health`` is 200 from
0.5 s on, measured). A test that needs a worker serving nothing while it loads appends
``--local-load-time S`` to the engine arguments (a knob of this mapping, never in a task
definition): the mocker then starts S seconds late, so for S seconds there is no endpoint and
no system server (the real worker's system server answers 503 for part of that time; its
health check fails either way).
"""

from __future__ import annotations

import shlex

from dynamo_ecs.dynamo_release import ENGINE_MODULES, ReleaseLine, is_engine_command, worker_flag_problems
from dynamo_ecs.shell_words import ShellSyntaxError, shell_words, simple_commands

ENGINE_MODULE, MOCK_MODULE = ENGINE_MODULES[0], "dynamo.mocker"
# vLLM flags the mocker has no use for: (flag, takes a value)
DROPPED_FLAGS = {
    "--enforce-eager": False,
    "--tensor-parallel-size": True,
    "--trust-remote-code": False,
    "--dtype": True,
}
# Flags both vLLM and the mocker take, with the same meaning.
KEPT_FLAGS = {
    "--max-model-len": True,
    "--block-size": True,
    "--gpu-memory-utilization": True,
    "--max-num-seqs": True,
    "--max-num-batched-tokens": True,
    "--enable-prefix-caching": False,
    "--no-enable-prefix-caching": False,
    "--enable-chunked-prefill": False,
    "--no-enable-chunked-prefill": False,
}
# Knobs of the mock engine itself, which a test may append (never in a task definition).
MOCK_ONLY_FLAGS = {"--startup-time": True, "--speedup-ratio": True, "--decode-speedup-ratio": True}
LOAD_TIME_FLAG = "--local-load-time"  # this mapping's stand-in for dynamo.vllm's model load (above)
FLAGS_TAKING_VALUES = {**DROPPED_FLAGS, **KEPT_FLAGS, **MOCK_ONLY_FLAGS}


class EngineMappingError(ValueError):
    """A command the real image would refuse, or one this mapping cannot vouch for."""


def engine_arguments(args: list[str], release: ReleaseLine, model_dir: str) -> list[str]:
    """The mocker's arguments for a ``dynamo.vllm`` worker's, or `EngineMappingError`."""
    problems = worker_flag_problems(args, release)
    if problems:
        raise EngineMappingError(problems[0])
    out: list[str] = []
    model: str | None = None
    served: str | None = None
    i = 0
    while i < len(args):
        flag, _, inline = args[i].partition("=")
        takes_value = FLAGS_TAKING_VALUES.get(flag)
        if flag in ("--model", "--served-model-name", "--disaggregation-mode", "--kv-transfer-config"):
            takes_value = True
        if takes_value and not inline and i + 1 >= len(args):
            raise EngineMappingError(f"{flag} needs a value")
        value = inline if inline else (args[i + 1] if takes_value else "")
        step = 1 if inline or not takes_value else 2
        if flag == "--model":
            model = value
        elif flag == "--served-model-name":
            served = value
        elif (
            flag in ("--disaggregation-mode", "--is-prefill-worker")
            or flag in KEPT_FLAGS
            or flag in MOCK_ONLY_FLAGS
        ):
            out += args[i : i + step]
        elif flag in DROPPED_FLAGS or flag == "--kv-transfer-config":
            pass  # vLLM's own (checked above); NIXL transfers need GPUs
        else:
            raise EngineMappingError(
                f"{flag}: not a flag the local mapping knows for {ENGINE_MODULE} "
                "(see devtools/local_ecs/engine.py)"
            )
        i += step
    if model is None:
        raise EngineMappingError(f"{ENGINE_MODULE} without --model: the worker would serve nothing")
    # vLLM takes a local directory or a hub id; only a directory can be served as it is here
    path = model if model.startswith("/") else model_dir
    return ["--model-path", path, "--model-name", served or model, *out]


def load_time(extra_engine_args: tuple[str, ...]) -> tuple[float, tuple[str, ...]]:
    """The ``--local-load-time`` seconds (0: none) and the engine arguments without it."""
    args = list(extra_engine_args)
    if LOAD_TIME_FLAG not in args:
        return 0.0, extra_engine_args
    at = args.index(LOAD_TIME_FLAG)
    try:
        seconds = float(args[at + 1])
    except (IndexError, ValueError):
        raise EngineMappingError(f"{LOAD_TIME_FLAG} needs a number of seconds") from None
    return seconds, tuple(args[:at] + args[at + 2 :])


def local_script(
    script: str, release: ReleaseLine, model_dir: str, extra_engine_args: tuple[str, ...] = ()
) -> str:
    """``script`` with every ``dynamo.vllm`` command swapped for the mocker; the rest verbatim."""
    load_s, extra_engine_args = load_time(extra_engine_args)
    try:
        words = shell_words(script)
    except ShellSyntaxError as error:
        raise EngineMappingError(str(error)) from None
    pieces: list[str] = []
    cursor = 0
    for command in simple_commands(words):
        values = [w.value for w in command]
        if not is_engine_command(values):
            continue
        mocked = engine_arguments(values[3:] + list(extra_engine_args), release, model_dir)
        replacement = shlex.join(["python", "-m", MOCK_MODULE, *mocked])
        if load_s > 0:  # `A && B &` backgrounds the whole list, so `sleep S && mocker &` keeps the job
            replacement = f"sleep {load_s:g} && {replacement}"
        pieces += [script[cursor : command[0].start], replacement]
        cursor = command[-1].end
    pieces.append(script[cursor:])
    return "".join(pieces)


def local_argv(
    argv: list[str], release: ReleaseLine, model_dir: str, extra_engine_args: tuple[str, ...] = ()
) -> list[str]:
    """A container's entryPoint + command with the engine swapped: ``sh -c SCRIPT`` or exec form."""
    if len(argv) >= 3 and argv[0] in ("sh", "bash", "/bin/sh", "/bin/bash") and argv[1] == "-c":
        return [argv[0], "-c", local_script(argv[2], release, model_dir, extra_engine_args), *argv[3:]]
    if is_engine_command(argv):
        load_s, extra_engine_args = load_time(extra_engine_args)
        mocked = [
            "python",
            "-m",
            MOCK_MODULE,
            *engine_arguments(argv[3:] + list(extra_engine_args), release, model_dir),
        ]
        return ["sh", "-c", f"sleep {load_s:g} && exec {shlex.join(mocked)}"] if load_s > 0 else mocked
    return list(argv)
