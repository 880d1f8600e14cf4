"""A training session: the base model, its adapter, the data and the rows the loss runs on.

`prepare` loads everything a run needs once; `split_loss` computes the next-token losses of any
set of examples, through the cached head (lm_head-only adapters) or a full forward pass. When the
output head is the only adapted layer the loss is fused (`qpa.adapters.head_loss`), on cached
rows or after a backbone forward alike: the (rows × vocabulary) logits are never held.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from qpa.adapters.head_loss import head_nll, head_parts
from qpa.adapters.qpa_lora import QPALoRA
from qpa.config import DataConfig, RunConfig
from qpa.training.distributed import World
from qpa.training.precision import autocast
from qpa.training.row_stream import RowStream, epoch_order
from qpa.training.rows import Rows, cache_key, head_inputs, target_mask, token_rows

log = logging.getLogger(__name__)
EVAL_BATCH = 32  # examples per evaluation batch


@dataclass
class Session:
    config: RunConfig
    model: nn.Module  # peft-wrapped (or the bare base model for evaluation)
    tuner: QPALoRA | None
    tokenizer: object
    splits: object  # qpa.data.Splits
    rows: dict[str, Rows]  # "train" / "val" (/ "test" with a test split)
    device: torch.device
    streams: dict[str, RowStream] = field(default_factory=dict)  # hidden rows, streamed in
    world: World = field(default_factory=World)  # the processes training together (one: World)
    head_alone: bool = False  # the output head is the only adapted layer: the loss can be fused

    @property
    def head_only(self) -> bool:
        return self.rows["train"].hidden is not None

    def autocast(self):
        """The context the model's forward runs in (`TrainConfig.precision`)."""
        return autocast(self.device, self.config.train.precision)

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        """Named trainable tensors: QPA's (generators, start scales, DoRA magnitudes peft
        trains), or the LoRA matrices (and DoRA magnitudes) otherwise."""
        if self.tuner is not None:
            return [(f"qpa.{n}", p) for n, p in self.tuner.named_trainable()]
        return [(f"lora.{n}", p) for n, p in self.model.named_parameters() if p.requires_grad]

    def start_state(self) -> list[tuple[str, torch.Tensor]]:
        """Named frozen tensors a resume restores with `trainable`: QPA's start shifts."""
        return [] if self.tuner is None else [(f"qpa.{n}", t) for n, t in self.tuner.named_start()]

    def n_trainable(self) -> int:
        return sum(p.numel() for _, p in self.trainable())

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """CPU copies of `trainable` and `start_state`: what a checkpoint or the best keeps."""
        return {n: t.detach().cpu().clone() for n, t in [*self.trainable(), *self.start_state()]}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy `state_tensors` back in; ValueError when one from another config is missing."""
        with torch.no_grad():
            for name, p in self.trainable():
                if name not in tensors:
                    raise ValueError(
                        f"`resume`: saved state lacks {name}; it was made by another config."
                    )
                p.copy_(tensors[name])
            for name, t in self.start_state():  # older checkpoints lack them: rebuilt from the seed
                if name in tensors:
                    t.copy_(tensors[name])


def pick_device(name: str) -> torch.device:
    """The torch device for `TrainConfig.device`; ``auto`` is ``$QPA_DEVICE`` when set (e.g. to
    keep a shared GPU machine's runs on the CPU), else cuda when there is one, else cpu."""
    if name == "auto":
        name = os.environ.get("QPA_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
        if name not in ("cpu", "cuda", "mps"):
            raise ValueError(f"QPA_DEVICE = {name!r} is not one of: cpu, cuda, mps.")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("`device` = 'cuda' but no CUDA GPU is available; use `auto` or `cpu`.")
    return torch.device(name)


def can_cache_head(base: nn.Module, targets: list[str]) -> bool:
    """True when the output head is the only adapted layer and nothing follows it."""
    head = base.get_output_embeddings()
    names = [n for n, m in base.named_modules() if m is head]
    softcap = getattr(getattr(base, "config", None), "final_logit_softcapping", None)
    return targets == names and not softcap


def build_rows(
    config: RunConfig,
    base: nn.Module,
    splits,
    use_cache: bool,
    cache_dir: Path | None,
    progress: Callable[..., None] | None = None,
    world: World | None = None,
    store: bool = True,
) -> tuple[dict[str, Rows], dict[str, RowStream]]:
    """Each split's rows; with `use_cache`, their hidden states stream in (`RowStream`), the
    training rows in the order the first epoch visits them (with several processes, the rows
    of this rank's share of each batch: the ranks compute different rows)."""
    world = world or World()
    perplexity = config.train.perplexity
    rows, streams = {}, {}
    for split in ("train", "val", "test"):
        encoded = getattr(splits, split)
        if encoded is None:  # no test split
            continue
        if not use_cache:
            rows[split] = token_rows(encoded, perplexity)
            continue
        key = cache_key(config.model.model, base, perplexity, encoded)
        path = cache_dir / f"rows-{key}.safetensors" if cache_dir is not None else None
        if split == "train":
            first = epoch_order(len(encoded), config.train.seed, 0)
            order = world.rows_order(first, config.train.batch_size, whole=False)
        else:  # evaluations give each rank whole batches
            whole = torch.arange(len(encoded))
            order = world.rows_order(whole, EVAL_BATCH, whole=True) if world.size > 1 else None
        report = progress and functools.partial(progress, "caching rows", split)
        streams[split] = RowStream(base, encoded, perplexity, path, order, report, store)
        rows[split] = streams[split].rows
    return rows, streams


_SPLITS: dict[tuple, object] = {}  # the built-in corpora's splits, by data config and tokenizer


def load_splits(data: DataConfig, tokenizer) -> object:
    """`build_splits`, remembered for the built-in corpora (read-only package data), so that the
    many runs of a sweep or comparison in one process tokenize them once."""
    from qpa.data.changelog import CHANGELOG_CORPUS
    from qpa.data.splits import build_splits

    if data.corpus not in ("chatterbot", CHANGELOG_CORPUS) or data.eval_corpus:
        return build_splits(data, tokenizer)
    key = (data, type(tokenizer).__name__, tokenizer.name_or_path, len(tokenizer),
           str(tokenizer.chat_template))  # fmt: skip
    if key not in _SPLITS:
        if len(_SPLITS) >= 2:
            _SPLITS.clear()
        _SPLITS[key] = build_splits(data, tokenizer)
    return _SPLITS[key]


def prepare(
    config: RunConfig,
    adapter_dir: Path | None = None,
    *,
    evaluate_only: bool = False,
    cache_dir: Path | None = None,
    progress: Callable[..., None] | None = None,
    world: World | None = None,
    store_rows: bool = True,
) -> Session:
    """Load model, data and adapter for `config` (or a saved adapter, or none, to evaluate);
    `world`: the processes training together (`qpa.training.distributed`), by default one;
    `store_rows` False reads the rows cached in `cache_dir` but stores none (a dry run's warm-up).

    Cached hidden rows are not computed here: `split_loss` streams them in as batches need them.
    `progress(phase, split=None, done=None, total=None, eta=None)` hears the phases (see
    `qpa.training.phases`): converting or loading the model, then each group of rows cached.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from qpa.config import DataConfig, ModelConfig, QPAConfig, TrainConfig
    >>> corpus = Path(tempfile.mkdtemp()) / "tiny.txt"
    >>> _ = corpus.write_text("\\n\\n".join(f"Sentence {i} of a tiny corpus." for i in range(20)))
    >>> session = prepare(RunConfig(
    ...     model=ModelConfig("tiny-llama"), qpa=QPAConfig(chunk_size=64, depth=2),
    ...     data=DataConfig(corpus=str(corpus), max_length=16),
    ...     train=TrainConfig(cache_backbone=False)))
    >>> session.tuner is not None, session.n_trainable() == session.tuner.param_counts()["total"]
    (True, True)
    """
    from qpa.adapters.export import load_adapter
    from qpa.adapters.qpa_lora import build_adapter, resolve_targets

    world = world or World()
    device = world.device or pick_device(config.train.device)
    base, tokenizer = frozen_base(config.model.model, device, progress)
    splits = load_splits(config.data, tokenizer)
    head_alone = can_cache_head(base, resolve_targets(base, config.adapter.target_modules))
    use_cache = config.train.cache_backbone and head_alone
    rows, streams = build_rows(
        config, base, splits, use_cache, cache_dir, progress, world, store_rows
    )
    torch.manual_seed(config.train.seed)
    tuner = None
    if evaluate_only:
        model = load_adapter(base, adapter_dir).to(device) if adapter_dir else base
    else:
        model, tuner = build_adapter(base, config.adapter, config.qpa)
        model.to(device)
        if tuner is not None:
            tuner.to(device)
    return Session(config, model, tuner, tokenizer, splits, rows, device, streams, world, head_alone)


def frozen_base(name: str, device: torch.device, progress: Callable[..., None] | None = None):
    """(model `name` on `device`, frozen and in eval mode, its tokenizer), telling `progress`
    whether it is converted or loaded."""
    from qpa.models.loading import load_model, needs_conversion

    if progress is not None:
        progress("converting the model" if needs_conversion(name) else "loading the model")
    base, tokenizer = load_model(name)
    base.to(device).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    return base, tokenizer


def output_head(model: nn.Module) -> nn.Module:
    """The (possibly LoRA-wrapped) output head of a bare or peft-wrapped model."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_output_embeddings()


def split_loss(
    session: Session, split: str, examples: torch.Tensor, assistant_only: bool = False,
    skip: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per-row next-token NLL (R,) of the given examples, and their assistant flags (R,).

    With `assistant_only`, only the rows whose target is an assistant token (every real token of
    plain text); on the cached head the others are then never computed. `skip` leaves out the
    first rows of every example (those all examples have alike, `qpa.training.rows.alike_rows`).
    """
    if split in session.streams:
        session.streams[split].ensure(examples)
    rows = session.rows[split]
    index = rows.select(examples, skip)
    if (assistant_only or skip) and not session.head_only:
        nll, assistant = split_loss(session, split, examples)
        keep = rows.kept(examples, skip) & (assistant if assistant_only else True)
        return nll[keep.to(nll.device)], assistant[keep]
    if assistant_only:
        index = index[rows.assistant[index]]
        if not len(index):  # no reply token in these examples
            return torch.zeros(0, device=session.device), rows.assistant[index]
    targets = rows.targets[index].to(session.device)
    head, norm = output_head(session.model), session.config.adapter.dora_norm
    # not cached: fused only when the head takes it (no LoRA dropout acting...), else the full
    # forward as before, which generates QPA's weights in its pre-hook
    fused = session.head_only or (session.head_alone and head_parts(head, norm) is not None)
    if not fused:
        logits = full_logits(session, split, examples)  # (R, V)
        return F.cross_entropy(logits.float(), targets, reduction="none"), rows.assistant[index]
    if session.tuner is not None:
        session.tuner.materialize()
    parts = head_parts(head, norm)  # this step's generated weights
    if session.head_only:
        hidden = rows.hidden[index].to(session.device)  # (R, d)
    else:
        hidden = full_hidden(session, split, examples)  # (R, d), the backbone run afresh
    if parts is None:  # LoRA dropout acting, or a head the fused loss does not take
        logits = head(hidden)  # (R, V)
        return F.cross_entropy(logits.float(), targets, reduction="none"), rows.assistant[index]
    nll = head_nll(
        hidden, parts.weight, targets, parts.lora_a, parts.lora_b, parts.scaling, parts.bias,
        dora=parts.dora,
    )  # (R,), fused: the (R, V) logits are never held
    return nll, rows.assistant[index]


def model_inputs(session: Session, split: str, examples: torch.Tensor):
    """(input ids, attention mask), both (B, width) on the device, pads trimmed unless counted."""
    encoded = getattr(session.splits, split)
    mask = encoded.attention_mask[examples]
    width = int(mask.sum(1).max()) if session.config.train.perplexity == "masked" else mask.shape[1]
    ids = encoded.input_ids[examples, :width].to(session.device)
    return ids, mask[:, :width].to(session.device)


def full_logits(session: Session, split: str, examples: torch.Tensor) -> torch.Tensor:
    """Logits of the counted positions from a full forward pass, pads trimmed."""
    ids, mask = model_inputs(session, split, examples)
    with session.autocast():
        logits = session.model(input_ids=ids, attention_mask=mask).logits  # (B, width, V)
    keep = target_mask(mask, session.config.train.perplexity)  # (B, width−1)
    return logits[:, :-1][keep]  # (R, V)


def full_hidden(session: Session, split: str, examples: torch.Tensor) -> torch.Tensor:
    """What enters the output head at the counted positions, (R, d) in fp32, from a forward
    pass of the backbone alone (the head comes after, fused)."""
    ids, mask = model_inputs(session, split, examples)
    model = session.model
    bare = model.get_base_model() if hasattr(model, "get_base_model") else model
    with session.autocast():
        hidden = head_inputs(bare, ids, mask)  # (B, width, d)
    keep = target_mask(mask, session.config.train.perplexity)  # (B, width−1)
    return hidden[:, :-1][keep].float()  # (R, d)
