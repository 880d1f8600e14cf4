"""Corpora → tensors: deterministic splits, exact assistant masks, packing, and refused uploads."""

import json

import pytest
import torch

from qpa.config import DataConfig
from qpa.data import encoding
from qpa.data import splits as data
from qpa.models.tiny_tokenizer import tiny_tokenizer

TOPICS = ("ai", "food")


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _split_texts(splits, tok):
    return [
        tok.decode(row[m.bool()])
        for row, m in zip(splits.val.input_ids, splits.val.attention_mask, strict=True)
    ]


@pytest.mark.chatterbot
def test_chatterbot_topics_are_the_package_files():
    topics = data.chatterbot_topics()
    assert len(topics) == 21 and {"ai", "science", "tech_support", "trivia"} <= set(topics)


@pytest.mark.chatterbot
def test_split_is_deterministic_by_seed(tok):
    cfg = DataConfig(topics=TOPICS, max_length=64)
    a, b = data.build_splits(cfg, tok), data.build_splits(cfg, tok)
    assert torch.equal(a.train.input_ids, b.train.input_ids)
    assert torch.equal(a.val.input_ids, b.val.input_ids)
    c = data.build_splits(cfg.replace(split_seed=1), tok)
    assert _split_texts(a, tok) != _split_texts(c, tok)
    assert len(a.train) + len(a.val) == a.n_examples == 105 + 17


@pytest.mark.chatterbot
def test_val_fraction_and_max_examples(tok):
    splits = data.build_splits(DataConfig(topics=TOPICS, val_fraction=0.5, max_examples=10), tok)
    assert (len(splits.train), len(splits.val)) == (5, 5)
    tiny = data.build_splits(DataConfig(topics=TOPICS, val_fraction=0.01, max_examples=3), tok)
    assert (len(tiny.train), len(tiny.val)) == (2, 1)  # at least one validation example


@pytest.mark.chatterbot
def test_a_test_split_is_held_out_three_ways_by_seed(tok):
    """Validation stays the same examples, test takes the next ones, training the rest."""
    cfg = DataConfig(topics=TOPICS, max_length=64)
    two, three = data.build_splits(cfg, tok), data.build_splits(cfg.replace(test_fraction=0.2), tok)
    assert two.test is None and torch.equal(two.val.input_ids, three.val.input_ids)
    assert (len(three.train), len(three.val), len(three.test)) == (86, 12, 24)
    rows = [set(map(tuple, s.input_ids.tolist())) for s in (three.train, three.val, three.test)]
    assert rows[2] <= set(map(tuple, two.train.input_ids.tolist()))  # taken from training
    assert not rows[2] & rows[0] and not rows[2] & rows[1]
    again = data.build_splits(cfg.replace(test_fraction=0.2), tok)
    assert torch.equal(again.test.input_ids, three.test.input_ids)
    assert "/ 24 test rows" in three.summary()


@pytest.mark.chatterbot
def test_a_test_split_that_leaves_no_training_data_is_refused():
    with pytest.raises(ValueError, match="`test_fraction` = 0.5 with `val_fraction` = 0.5 leaves"):
        DataConfig(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="`test_fraction` = 0.4: 2 example.*1 for test"):
        data.split_sizes(DataConfig(topics=TOPICS, max_examples=2, test_fraction=0.4))
    old = {k: v for k, v in DataConfig().to_dict().items() if k != "test_fraction"}
    assert DataConfig.from_dict(old).test_fraction == 0  # run folders from before still load


def test_the_gradio_changelog_is_plain_english_text():
    pytest.importorskip("gradio", reason="the gradio-changelog corpus ships with gradio")
    from qpa.data.changelog import read_changelog

    texts = data.load_conversations(DataConfig(corpus="gradio-changelog"))
    assert texts == list(read_changelog()) and len(texts) > 3000
    assert all(isinstance(t, str) and t for t in texts)
    joined = " ".join(texts)
    assert "](http" not in joined and "Thanks @" not in joined and "Fix" in joined


@pytest.mark.chatterbot
def test_topics_filter(tok):
    convs = data.load_conversations(DataConfig(topics=("food",)))
    assert len(convs) == 17
    assert all(m["role"] in ("user", "assistant") for c in convs for m in c)
    assert len(data.load_conversations(DataConfig())) == 2025  # trivia's one bare string skipped


@pytest.mark.chatterbot
def test_unknown_topic_lists_the_valid_ones():
    with pytest.raises(ValueError, match="`topics` = 'ai,cooking'.*cooking.*valid topics: ai, "):
        data.load_conversations(DataConfig(topics=("ai", "cooking")))


@pytest.mark.chatterbot
def test_assistant_mask_marks_exactly_the_replies(tok):
    cfg = DataConfig(topics=TOPICS, max_length=512)
    splits = data.build_splits(cfg, tok)
    convs = data.load_conversations(cfg)
    order = torch.randperm(len(convs), generator=torch.Generator().manual_seed(0)).tolist()
    val_convs = [convs[i] for i in order[: len(splits.val)]]
    for conv, ids, mask in zip(
        val_convs, splits.val.input_ids, splits.val.assistant_mask, strict=True
    ):
        replies = "".join(m["content"] + "<|im_end|>" for m in conv if m["role"] == "assistant")
        assert tok.decode(ids[mask.bool()]) == replies
        assert tok.decode(ids[~mask.bool()]).startswith("<|im_start|>user\n")


def test_assistant_mask_with_system_turn_and_multi_turn(tok):
    conv = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Hi again"},
        {"role": "assistant", "content": "Hello again"},
    ]
    ids, masks = encoding.tokenize([conv], tok)
    picked = [i for i, m in zip(ids[0], masks[0], strict=True) if m]
    assert tok.decode(picked) == "Hello<|im_end|>Hello again<|im_end|>"


def test_plain_text_mask_equals_attention(tmp_path, tok):
    path = tmp_path / "notes.txt"
    path.write_text("First paragraph,\nstill first.\n\nSecond one.\n\n\nThird.\n" * 3)
    cfg = DataConfig(corpus=str(path), max_length=16)
    texts = data.load_conversations(cfg)
    assert texts[:2] == ["First paragraph,\nstill first.", "Second one."]
    splits = data.build_splits(cfg, tok)
    assert not splits.chat
    assert torch.equal(splits.train.assistant_mask, splits.train.attention_mask)
    assert splits.n_truncated == 3  # the 28-character first paragraphs
    assert (splits.train.input_ids[splits.train.attention_mask == 0] == tok.pad_token_id).all()


@pytest.mark.chatterbot
def test_block_packing_has_full_blocks(tok):
    splits = data.build_splits(DataConfig(topics=TOPICS, packing="block", max_length=32), tok)
    for part in (splits.train, splits.val):
        assert part.input_ids.shape[1] == 32 and part.input_ids.dtype == torch.long
        assert part.attention_mask.all()
    n_blocks = len(splits.train) + len(splits.val)
    assert n_blocks * 32 <= splits.n_tokens < (n_blocks + 2) * 32
    assert 0 < splits.train.assistant_mask.float().mean() < 1


def test_corpus_too_small_for_a_block(tmp_path, tok):
    path = tmp_path / "short.txt"
    path.write_text("one\n\ntwo\n\nthree")
    with pytest.raises(ValueError, match="`max_length` = 512.*not one block"):
        data.build_splits(DataConfig(corpus=str(path), packing="block", max_length=512), tok)
    path.write_text("only one paragraph")
    with pytest.raises(ValueError, match="`corpus`.*too small"):
        data.build_splits(DataConfig(corpus=str(path)), tok)


def test_jsonl_and_csv_corpora(tmp_path, tok):
    chat = tmp_path / "chat.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": i}]}
            for i in range(6)]  # fmt: skip
    chat.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    convs = data.load_conversations(DataConfig(corpus=str(chat)))
    assert convs[5] == [{"role": "user", "content": "q5"}, {"role": "assistant", "content": "5"}]
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "a b"}\n{"text": "c"}\n')
    assert data.load_conversations(DataConfig(corpus=str(texts))) == ["a b", "c"]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text('question,answer\nHi,"Hello, you"\nBye,See you\n')
    assert data.load_conversations(DataConfig(corpus=str(pairs)))[0][1]["content"] == "Hello, you"
    col = tmp_path / "col.csv"
    col.write_text("id,text\n1,first\n2,second\n")
    assert data.load_conversations(DataConfig(corpus=str(col))) == ["first", "second"]
    assert data.build_splits(DataConfig(corpus=str(chat), max_length=32), tok).chat


BAD_UPLOADS = {
    "empty.txt": (b"  \n", "is empty"),
    "zero.jsonl": (b"", "is empty"),
    "image.txt": (b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
    "latin1.txt": ("café".encode("latin-1"), "not UTF-8"),
    "bad.jsonl": (b'{"text": "ok"}\n{"text": "oops"\n', "line 2: malformed JSON"),
    "wrongkeys.jsonl": (b'{"text": "ok"}\n{"body": "x"}\n', "line 2: expected"),
    "evil.yml": (
        b"conversations: !!python/object/apply:os.system ['echo hi']\n",
        "tag .*not allowed",
    ),
    "notyaml.yml": (b"conversations: [unclosed\n", "line 2: malformed YAML"),
    "shape.yaml": (b"- just\n- a list\n", "not chatterbot-shaped"),
    "wide.csv": (b"a,b,c\n1,2,3\n", "no `text` column"),
    "data.pdf": (b"%PDF-1.4", "unknown file type '.pdf'"),
}


@pytest.mark.parametrize("name", BAD_UPLOADS)
def test_bad_uploads_are_refused_with_the_reason(tmp_path, name):
    content, reason = BAD_UPLOADS[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"`corpus` = '{name}'.*{reason}"):
        data.check_upload(path)


def test_too_large_upload(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_UPLOAD_BYTES", 10)
    path = tmp_path / "big.txt"
    path.write_text("x" * 11)
    with pytest.raises(ValueError, match="too large: 11 bytes, the limit is 10"):
        data.check_upload(path)


def test_good_uploads_pass(tmp_path):
    path = tmp_path / "ok.yml"
    path.write_text("categories: [x]\nconversations:\n- [Hi, 3]\n- [Q, [a, b]]\n")
    data.check_upload(path)
    assert data.load_conversations(DataConfig(corpus=str(path)))[1][1]["content"] == "a\nb"


def test_missing_file_and_hub_without_datasets(tmp_path):
    with pytest.raises(ValueError, match="`corpus` = .*not `chatterbot`"):
        data.load_conversations(DataConfig(corpus=str(tmp_path / "absent.txt")))
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="needs the `datasets` package"):
            data.load_conversations(DataConfig(corpus="hf:wikitext:wikitext-2-raw-v1"))


@pytest.mark.chatterbot
def test_preview_shows_templated_conversations(tok):
    texts = data.preview(DataConfig(topics=("food",)), tok, n=2)
    assert len(texts) == 2 and all(t.startswith("<|im_start|>user\n") for t in texts)
