"""Capture what a real Dynamo frontend and its workers expose, for tests/unit/signals/fixtures.

Run ``python -m devtools.capture_dynamo_metrics`` after ``make setup``. It starts a local etcd
and nats-server, then Dynamo's own processes from the venv named by ``DYNAMO_PYTHON``
(default ``/work/main/.tools/dynamo/bin/python``, ai-dynamo 1.6.1): the frontend
(``--router-mode kv``), a decode and a prefill mocker (``--disaggregation-mode``), each worker
with its system port (``DYN_SYSTEM_PORT``). Under a bounded burst of concurrent chat
completions it saves, all as the programs answered:

- ``dynamo_<version>_<scenario>_frontend_no_prefill.txt``: the frontend's ``/metrics`` while only
  the decode worker runs, after `REFUSED` chat requests were refused (503, model not ready);
- ``..._frontend_{idle,loaded,after}.txt``: the frontend's ``/metrics`` once the prefill worker
  is up, before any request, while requests are in flight, and after the burst;
- ``..._worker_{decode,prefill}_{loaded,after}.txt``: each worker's system ``/metrics``;
- ``..._nats_{jsz,subsz,connz}_loaded.json``: the NATS monitor while requests are in flight.

``<scenario>`` is one of `SCENARIOS`: ``tcp`` (Dynamo's default planes, decode the
bottleneck), ``nats`` (``--request-plane nats --event-plane nats`` on every process),
``tcp_events_nats`` (``--event-plane nats``: the default specs' planes) and
``tcp_prefill_bound`` (prefill the bottleneck, the KV router's queue on). Everything listens
on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools.services import LOOPBACK, ManagedProcess, etcd_server, free_port, http_ok, nats_server

OUT = Path(__file__).resolve().parent.parent / "tests" / "unit" / "signals" / "fixtures"
DYNAMO_PYTHON = os.environ.get("DYNAMO_PYTHON", "/work/main/.tools/dynamo/bin/python")
MODEL = "test-model"
# Enough concurrent requests to fill the mockers' small batches, few enough for 2 cores.
CONCURRENT = 48
MAX_TOKENS = 60
REFUSED = 5


@dataclass(frozen=True)
class Scenario:
    """Extra arguments of each process. Small batches and a slowed clock make requests wait."""

    name: str
    planes: tuple[str, ...] = ()
    frontend: tuple[str, ...] = ()
    decode: tuple[str, ...] = ("--max-num-seqs", "4", "--speedup-ratio", "0.5")
    prefill: tuple[str, ...] = ("--max-num-seqs", "4", "--speedup-ratio", "0.5")
    keep: frozenset[str] | None = None  # the files this scenario adds (None: all of them)


NATS_PLANES = ("--request-plane", "nats", "--event-plane", "nats")
SCENARIOS = (
    # The default planes; decode is the bottleneck.
    Scenario("tcp"),
    # Requests over NATS core request/reply (what /subsz and /connz show then).
    Scenario(
        "nats",
        planes=NATS_PLANES,
        keep=frozenset(
            {
                "frontend_loaded.txt",
                "worker_decode_loaded.txt",
                "nats_subsz_loaded.json",
                "nats_connz_loaded.json",
            }
        ),
    ),
    # The default specs' planes: requests over TCP, events over NATS (DYN_EVENT_PLANE=nats).
    Scenario(
        "tcp_events_nats",
        planes=("--event-plane", "nats"),
        keep=frozenset({"nats_jsz_loaded.json", "nats_connz_loaded.json"}),
    ),
    # Prefill is the bottleneck, and the KV router's own queue is on (off by default).
    Scenario(
        "tcp_prefill_bound",
        frontend=("--router-queue-threshold", "0"),
        decode=("--speedup-ratio", "4"),
        prefill=("--max-num-seqs", "1", "--max-num-batched-tokens", "256", "--speedup-ratio", "0.05"),
        keep=frozenset({"frontend_loaded.txt", "worker_prefill_loaded.txt"}),
    ),
)

_MAKE_MODEL_DIR = r"""
import json, sys
from pathlib import Path
from tokenizers import Tokenizer, models, pre_tokenizers
out = Path(sys.argv[1])
words = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(500)]
words += "hello world user assistant system the a of".split()
tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
tok.save(str(out / "tokenizer.json"))
(out / "tokenizer_config.json").write_text(json.dumps({
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 4096,
    "tokenizer_class": "PreTrainedTokenizerFast",
    "chat_template": "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}assistant",
}))
(out / "config.json").write_text(json.dumps({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": len(words),
    "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
    "max_position_embeddings": 4096, "bos_token_id": 1, "eos_token_id": 2,
}))
"""


def system_port() -> int:
    """A free loopback port below 32768: 1.6.1 reads DYN_SYSTEM_PORT as a signed 16-bit integer."""
    import socket

    for port in range(21000 + os.getpid() % 5000, 32767):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32768")


def get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def dynamo_version() -> str:
    out = subprocess.run(
        [DYNAMO_PYTHON, "-c", "import importlib.metadata as m; print(m.version('ai-dynamo'))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def chat(port: int, index: int) -> int:
    """One chat completion; returns the HTTP status (0: no answer)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": " ".join(f"w{(index * 7 + i) % 500}" for i in range(200))}],
        "max_tokens": MAX_TOKENS,
        "stream": False,
    }
    request = urllib.request.Request(
        f"http://{LOOPBACK}:{port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def model_serves(port: int) -> bool:
    try:
        metrics = get_text(f"http://{LOOPBACK}:{port}/metrics", timeout=1.0)
    except OSError:
        return False
    return any(
        line.startswith("dynamo_frontend_model_ready{") and line.endswith(" 1")
        for line in metrics.splitlines()
    )


@contextlib.contextmanager
def dynamo(scenario: Scenario, workdir: Path) -> Iterator[tuple[dict[str, int], str]]:
    """etcd, nats-server, frontend, decode and prefill mockers.

    Yields their ports and the frontend's ``/metrics`` from before the prefill worker
    started, after `REFUSED` requests were refused for it.
    """
    with etcd_server(workdir) as etcd, nats_server(workdir) as nats:
        model_dir = workdir / "model"
        model_dir.mkdir()
        subprocess.run([DYNAMO_PYTHON, "-c", _MAKE_MODEL_DIR, str(model_dir)], check=True)
        ports = {"http": free_port(), "nats_monitor": nats.monitor_port}
        ports["decode"] = system_port()
        ports["prefill"] = ports["decode"] + 1 if ports["decode"] < 32766 else system_port()
        env = {
            **os.environ,
            "ETCD_ENDPOINTS": etcd.url,
            "NATS_SERVER": nats.url,
            "DYN_TCP_RPC_HOST": LOOPBACK,
            "HF_HUB_OFFLINE": "1",
        }
        planes = list(scenario.planes)
        mocker = [DYNAMO_PYTHON, "-m", "dynamo.mocker", "--model-path", str(model_dir), "--model-name", MODEL]
        processes = [
            ManagedProcess(
                "frontend",
                [
                    DYNAMO_PYTHON,
                    "-m",
                    "dynamo.frontend",
                    "--router-mode",
                    "kv",
                    "--http-port",
                    str(ports["http"]),
                    *planes,
                    *scenario.frontend,
                ],
                ready=lambda: http_ok(f"http://{LOOPBACK}:{ports['http']}/live"),
                env=env,
                log_path=workdir / "frontend.log",
            ),
            ManagedProcess(
                "decode",
                [*mocker, "--disaggregation-mode", "decode", *scenario.decode, *planes],
                ready=lambda: http_ok(
                    f"http://{LOOPBACK}:{ports['decode']}/metrics"
                ),  # /live is 503 by default
                env={**env, "DYN_SYSTEM_PORT": str(ports["decode"])},
                log_path=workdir / "decode.log",
            ),
            ManagedProcess(
                "prefill",
                [*mocker, "--disaggregation-mode", "prefill", *scenario.prefill, *planes],
                ready=lambda: http_ok(f"http://{LOOPBACK}:{ports['prefill']}/metrics"),
                env={**env, "DYN_SYSTEM_PORT": str(ports["prefill"])},
                log_path=workdir / "prefill.log",
            ),
        ]
        started: list[ManagedProcess] = []
        try:
            for process in processes[:2]:
                process.start(timeout=90)
                started.append(process)
            # Disaggregated without a prefill worker: the model is not ready, requests are refused.
            time.sleep(3)
            refused = [chat(ports["http"], i) for i in range(REFUSED)]
            if set(refused) != {503}:
                raise RuntimeError(f"expected 503 without a prefill worker, got {refused}")
            without_prefill = get_text(f"http://{LOOPBACK}:{ports['http']}/metrics")
            processes[2].start(timeout=90)
            started.append(processes[2])
            deadline = time.monotonic() + 90
            while not model_serves(ports["http"]):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"model never ready; see the logs in {workdir}")
                time.sleep(0.5)
            yield ports, without_prefill
        finally:
            for process in reversed(started):
                process.stop()


def capture(scenario: Scenario, version: str) -> None:
    prefix = f"dynamo_{version.replace('.', '_')}_{scenario.name}"

    def save(name: str, text: str) -> None:
        if scenario.keep is None or name in scenario.keep:
            (OUT / f"{prefix}_{name}").write_text(text)

    with (
        tempfile.TemporaryDirectory(prefix="dynamo-capture-") as tmp,
        dynamo(scenario, Path(tmp)) as (ports, without_prefill),
    ):
        frontend = f"http://{LOOPBACK}:{ports['http']}/metrics"
        workers = {role: f"http://{LOOPBACK}:{ports[role]}/metrics" for role in ("decode", "prefill")}
        monitor = f"http://{LOOPBACK}:{ports['nats_monitor']}"
        save("frontend_no_prefill.txt", without_prefill)
        save("frontend_idle.txt", get_text(frontend))

        statuses: list[int] = []
        threads = [
            threading.Thread(target=lambda i=i: statuses.append(chat(ports["http"], i)))
            for i in range(CONCURRENT)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.5)  # the burst is queued and in flight
        save("frontend_loaded.txt", get_text(frontend))
        for role, url in workers.items():
            save(f"worker_{role}_loaded.txt", get_text(url))
        for page in ("jsz?consumers=true", "subsz?subs=1", "connz?subs=detail"):
            save(
                f"nats_{page.partition('?')[0]}_loaded.json",
                json.dumps(json.loads(get_text(f"{monitor}/{page}")), indent=1) + "\n",
            )
        for thread in threads:
            thread.join(timeout=180)
        save("frontend_after.txt", get_text(frontend))
        for role, url in workers.items():
            save(f"worker_{role}_after.txt", get_text(url))
        print(f"{scenario.name}: {len(statuses)} requests, statuses {sorted(set(statuses))}", file=sys.stderr)


def main() -> None:
    version = dynamo_version()
    for scenario in SCENARIOS:
        capture(scenario, version)


if __name__ == "__main__":
    main()
