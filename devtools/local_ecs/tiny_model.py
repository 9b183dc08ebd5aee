"""Write the tiny model directory the mocker serves: a tokenizer and a config, nothing downloaded.

Dynamo's mock engine needs only what the frontend's preprocessor reads: ``tokenizer.json``
(here a word-level tokenizer over a small vocabulary, made with the ``tokenizers`` library),
``tokenizer_config.json`` with a chat template, and ``config.json``. Run with the Dynamo
environment's Python (``make setup`` does): ``.tools/dynamo/bin/python devtools/local_ecs/tiny_model.py DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SPECIAL = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
WORDS = ["user", "assistant", "system", "hello", "world", "the", "a", "is", "of", "and", "to", "in"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|> {% endfor %}"
    "<|im_start|>assistant"
)


def write_tiny_model(directory: Path, filler_words: int = 500) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocabulary = SPECIAL + WORDS + [f"w{i}" for i in range(filler_words)]
    vocab = {w: i for i, w in enumerate(vocabulary)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))  # noqa: S106 (a token)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer_config = {
        "chat_template": CHAT_TEMPLATE,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 8192,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=1))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": len(vocabulary),
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "max_position_embeddings": 8192,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float16",
    }
    (directory / "config.json").write_text(json.dumps(config, indent=1))


if __name__ == "__main__":
    write_tiny_model(Path(sys.argv[1]))
