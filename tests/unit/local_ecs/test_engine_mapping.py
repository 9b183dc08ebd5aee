"""The one substitution of the local runner: dynamo.vllm becomes Dynamo's mocker, all else verbatim."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from devtools.local_ecs.engine import EngineMappingError, local_argv, local_script
from dynamo_ecs.dynamo_release import release_of_image
from dynamo_ecs.shell_words import ShellSyntaxError, shell_words
from dynamo_ecs.specs import load_default_spec

V16 = release_of_image("nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.6.1")
V10 = release_of_image("nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.0.0")
V06 = release_of_image("nvcr.io/nvidia/ai-dynamo/vllm-runtime:0.6.1")
KV = """'{"kv_connector":"NixlConnector","kv_role":"kv_both"}'"""


def test_the_default_frontend_command_keeps_everything_but_the_engine() -> None:
    # Given the default frontend spec's bash -c script
    container = load_default_spec("frontend")["containerDefinitions"][0]
    argv = [*container["entryPoint"], *container["command"]]
    # When it is mapped
    mapped = local_argv(argv, V16, "/m")
    # Then the frontend and the shell around it are untouched, the engine is the mocker
    assert mapped[:2] == ["bash", "-c"]
    script = mapped[2]
    assert "python3 -m dynamo.frontend --router-mode kv --http-port 8000 &" in script
    assert "dynamo.vllm" not in script
    assert (
        "python -m dynamo.mocker --model-path /m --model-name Qwen/Qwen3-0.6B --disaggregation-mode decode"
        in script
    )
    assert script.startswith("trap 'kill -TERM $(jobs -p) 2>/dev/null; wait' TERM INT;")
    assert script.endswith("& wait -n")


def test_the_mapped_script_is_valid_shell() -> None:
    container = load_default_spec("prefill")["containerDefinitions"][0]
    script = local_script(container["command"][0], V16, "/model dir")
    subprocess.run(["bash", "-n", "-c", script], check=True)
    assert "--model-path '/model dir'" in script


def test_a_model_with_an_equals_sign_and_quotes() -> None:
    script = local_script(
        f"python3 -m dynamo.vllm --model='Qwen/Qwen3-8B' --kv-transfer-config {KV}", V16, "/m"
    )
    assert shlex.split(script)[-2:] == ["--model-name", "Qwen/Qwen3-8B"]


def test_is_prefill_worker_is_refused_where_the_release_removed_it() -> None:
    with pytest.raises(EngineMappingError, match="--disaggregation-mode prefill"):
        local_script(
            f"python3 -m dynamo.vllm --model m --is-prefill-worker --kv-transfer-config {KV}", V16, "/m"
        )
    # ... and accepted on a release that still has it
    script = local_script(
        f"python3 -m dynamo.vllm --model m --is-prefill-worker --kv-transfer-config {KV}", V10, "/m"
    )
    assert "--is-prefill-worker" in script


def test_disaggregation_mode_is_refused_before_1_0() -> None:
    with pytest.raises(EngineMappingError, match=r"does not exist on Dynamo 0\.6"):
        local_script("python3 -m dynamo.vllm --model m --disaggregation-mode prefill", V06, "/m")


def test_a_disaggregated_worker_without_kv_transfer_config_is_refused_on_1_x() -> None:
    with pytest.raises(EngineMappingError, match="needs --kv-transfer-config"):
        local_script("python3 -m dynamo.vllm --model m --disaggregation-mode prefill", V16, "/m")


def test_kv_transfer_config_must_be_json() -> None:
    with pytest.raises(EngineMappingError, match="not JSON"):
        local_script(
            "python3 -m dynamo.vllm --model m --disaggregation-mode decode --kv-transfer-config {x}",
            V16,
            "/m",
        )


def test_an_unknown_engine_flag_is_refused_rather_than_guessed() -> None:
    with pytest.raises(EngineMappingError, match="--speculative-config"):
        local_script("python3 -m dynamo.vllm --model m --speculative-config x", V16, "/m")


def test_a_worker_without_a_model_is_refused() -> None:
    with pytest.raises(EngineMappingError, match="without --model"):
        local_argv(["python3", "-m", "dynamo.vllm", "--enforce-eager"], V16, "/m")


def test_mock_engine_knobs_from_a_test_are_kept() -> None:
    script = local_script("python3 -m dynamo.vllm --model m", V16, "/m", ("--startup-time", "3"))
    assert script.endswith("--startup-time 3")


def test_commands_that_are_not_the_engine_are_left_exactly_as_written() -> None:
    script = 'cd examples/backends/vllm && python -m dynamo.frontend --router-mode kv & echo "a  b" ; exit 3'
    assert local_script(script, V16, "/m") == script
    assert local_argv(["python", "-m", "dynamo.frontend"], V16, "/m") == ["python", "-m", "dynamo.frontend"]


def test_shell_words_keep_operators_and_quoted_text() -> None:
    words = shell_words("""a 'b c'&&d "e \\" f";g""")
    assert [w.value for w in words] == ["a", "b c", "&&", "d", 'e " f', ";", "g"]


def test_an_unterminated_quote_is_an_error() -> None:
    with pytest.raises(ShellSyntaxError, match="unterminated"):
        shell_words("python3 -m dynamo.vllm --model 'm")
    with pytest.raises(EngineMappingError, match="unterminated"):
        local_script("python3 -m dynamo.vllm --model 'm", V16, "/m")


def test_a_local_model_directory_is_served_as_it_is_under_the_served_name() -> None:
    # Given the engine command of a spec whose weights come from a host volume
    script = local_script(
        f"python3 -m dynamo.vllm --model /models/weights --served-model-name Qwen/Qwen3-0.6B "
        f"--disaggregation-mode prefill --kv-transfer-config {KV}",
        V16,
        "/tiny",
    )
    # Then the mocker loads that directory, not the tiny model, and registers the served name
    assert shlex.split(script)[3:] == [
        "--model-path",
        "/models/weights",
        "--model-name",
        "Qwen/Qwen3-0.6B",
        "--disaggregation-mode",
        "prefill",
    ]


def test_a_served_name_renames_a_hub_model_too() -> None:
    script = local_script(
        "python3 -m dynamo.vllm --model Qwen/Qwen3-8B --served-model-name=qwen", V16, "/tiny"
    )
    assert shlex.split(script)[3:] == ["--model-path", "/tiny", "--model-name", "qwen"]


def test_a_local_load_time_starts_the_worker_late_in_the_same_background_job() -> None:
    # Given the default prefill command and a test's load of 12 s
    container = load_default_spec("prefill")["containerDefinitions"][0]
    argv = [*container["entryPoint"], *container["command"]]
    script = local_argv(argv, V16, "/m", ("--local-load-time", "12", "--speedup-ratio", "2"))[2]
    # Then the mocker starts after the sleep, both in the job `wait -n` waits for; the knob is gone
    assert "sleep 12 && python -m dynamo.mocker --model-path /m" in script
    assert script.endswith("--speedup-ratio 2 & wait -n") and "--local-load-time" not in script
    subprocess.run(["bash", "-n", "-c", script], check=True)
    # An exec-form worker sleeps in a shell, then becomes the mocker
    exec_form = local_argv(
        ["python3", "-m", "dynamo.vllm", "--model", "m"], V16, "/m", ("--local-load-time", "1")
    )
    assert exec_form[:2] == ["sh", "-c"] and exec_form[2].startswith(
        "sleep 1 && exec python -m dynamo.mocker"
    )
    with pytest.raises(EngineMappingError, match="--local-load-time needs a number"):
        local_argv(argv, V16, "/m", ("--local-load-time",))
