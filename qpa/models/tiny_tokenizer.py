"""A tiny self-contained chat tokenizer for tests and the `tiny-*` model presets.

Byte-level: every UTF-8 byte is one token, so any text round-trips and nothing is downloaded.
Three special tokens sit before the 256 byte tokens: ``<pad>`` (0), ``<|im_start|>`` (1) and
``<|im_end|>`` (2, also eos). The chat template is ChatML, the format SmolLM2 uses, without
SmolLM2's default system prompt:

>>> tok = tiny_tokenizer()
>>> len(tok), tok.pad_token_id, tok.eos_token_id
(259, 0, 2)
>>> tok.decode(tok("héllo").input_ids)
'héllo'
>>> tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
...                         add_generation_prompt=True)
'<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _byte_vocab() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte → token id (after the specials)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    offset = len(SPECIAL_TOKENS)
    return {chars[b]: offset + b for b in range(256)}


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh byte-level tokenizer with pad/eos set, right padding and a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)} | _byte_vocab()
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        padding_side="right",
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok
