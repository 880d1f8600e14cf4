"""One explicit training loop for QPA-LoRA and plain LoRA, and perplexity evaluation.

Both methods share everything (targets, rank, data, seed, AdamW, schedule); they differ only in
what is trainable: the circuit angles and mapping MLP (QPA) or the LoRA matrices (LoRA).
Progress goes to callbacks as event dicts and, when a `Run` is given, to its directory.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import torch

from qpa.config import RunConfig
from qpa.training.base_metrics import cached_base_metrics
from qpa.training.best import BestKeeper, headline, kept_summary
from qpa.training.estimate import Recorder
from qpa.training.phases import reporter
from qpa.training.row_stream import epoch_order
from qpa.training.session import Session, pick_device, prepare, split_loss

Callback = Callable[[dict], None]
MAX_LOG_PERPLEXITY = 700.0  # exp() of more overflows a float


def perplexity(loss: float) -> float:
    """exp(`loss`), capped at exp(700) so a huge loss never overflows.

    >>> perplexity(0.0), perplexity(1e6) == perplexity(700.0)
    (1.0, True)
    """
    return math.exp(min(loss, MAX_LOG_PERPLEXITY))


def check_finite(loss: float, split: str, step: int, config: RunConfig) -> None:
    """ValueError when a loss is NaN or infinite: training diverged, and the run must fail
    rather than export NaN weights."""
    if math.isfinite(loss):
        return
    knobs = "`lr`" + (", `gamma` or `beta`" if config.adapter.method == "qpa-lora" else "")
    raise ValueError(
        f"Training diverged: the {split} loss at step {step} is {loss}; lower {knobs} "
        f"(`lr` = {config.train.lr:g})."
    )


def validate_config(config: RunConfig) -> RunConfig:
    """Resolve defaults and check model, targets, qubits and data (both splits must hold
    examples) before any run folder exists."""
    from qpa.adapters.counts import count_params, lora_layout
    from qpa.data.splits import check_corpus
    from qpa.models.loading import SHAPE_PRESETS
    from qpa.training.plan import plan_training
    from qpa.training.trackers import check_tracker

    config = config.resolved()
    pick_device(config.train.device)  # no GPU, or a bad $QPA_DEVICE, fail before any folder
    check_tracker(config.train.report_to)
    if config.model.model in SHAPE_PRESETS:
        raise ValueError(
            f"`model` = {config.model.model!r} is a shape-only preset for counting; train "
            "`smollm2`, a tiny-* preset, a Hub id or a local model folder."
        )
    layout = lora_layout(config.model.model, config.adapter.target_modules, config.adapter.rank)
    if config.adapter.use_dora and config.adapter.dora_norm == "differentiated":
        check_differentiated_norm(config, layout.targets)
    if config.adapter.method == "qpa-lora":
        count_params(config.model.model, config.adapter, config.qpa)  # too few qubits raise here
    check_corpus(config.data)
    plan_training(config)  # a topic selection or corpus too small to split raises here
    return config


def check_differentiated_norm(config: RunConfig, targets: tuple[str, ...]) -> None:
    """`dora_norm` = "differentiated" lives in the fused lm_head loss only: say what is missing
    (without DoRA it does nothing, like `dora_magnitude`)."""
    from qpa.models.loading import build_model
    from qpa.training.session import can_cache_head

    missing = [
        *(["`cache_backbone`"] if not config.train.cache_backbone else []),
        *(["`lora_dropout` = 0"] if config.adapter.lora_dropout else []),
    ]
    if not can_cache_head(build_model(config.model.model, device="meta"), list(targets)):
        missing.append("lm_head as the only target")
    if missing:
        raise ValueError(f"`dora_norm` = 'differentiated' needs {', '.join(missing)}.")


def lr_factor(step: int, config) -> float:
    """Linear warm-up, then cosine, linear or constant decay (multiplies the peak lr)."""
    warm = round(config.warmup_fraction * config.steps)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, config.steps - warm)
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1 - progress if config.schedule == "linear" else 1.0


def batch_examples(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Example indices of `step`: a fresh seeded shuffle each epoch, so resuming is exact."""
    per_epoch = max(1, math.ceil(n / batch_size))
    epoch, i = divmod(step, per_epoch)
    return epoch_order(n, seed, epoch)[i * batch_size : (i + 1) * batch_size]


@torch.no_grad()
def evaluate_split(session: Session, split: str = "val", batch_size: int = 32) -> dict:
    """Token-level loss and perplexity over a whole split, all tokens and assistant tokens."""
    session.model.eval()
    n = session.rows[split].n_examples
    total = assistant_total = 0.0
    count = assistant_count = 0
    for start in range(0, n, batch_size):
        nll, assistant = split_loss(session, split, torch.arange(start, min(n, start + batch_size)))
        total, count = total + nll.sum().item(), count + nll.numel()
        assistant = assistant.to(nll.device)
        assistant_total += nll[assistant].sum().item()
        assistant_count += int(assistant.sum())
    loss = total / max(1, count)
    out = {"loss": loss, "perplexity": perplexity(loss), "tokens": count}
    if 0 < assistant_count < count:
        out["assistant_loss"] = assistant_total / assistant_count
        out["assistant_perplexity"] = perplexity(out["assistant_loss"])
    return out


def _state(session: Session, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = session.state_tensors()
    for idx, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu()
    return tensors


def _restore(
    session: Session, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]
) -> None:
    session.load_state_tensors(tensors)
    state = optimizer.state_dict()
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, field = key.split(".", 2)
            state["state"].setdefault(int(idx), {})[field] = (
                value.to(session.device) if field != "step" else value
            )
    optimizer.load_state_dict(state)


class _Stopper:
    """Turns SIGTERM/SIGINT into a stop request while training (main thread only)."""

    def __init__(self, run):
        self.run, self.flag, self.saved = run, False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, *_):
        self.flag = True

    def __exit__(self, *_):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)

    @property
    def stop(self) -> bool:
        return self.flag or (self.run is not None and self.run.stop_requested())


def train(
    config: RunConfig, run=None, callbacks: Sequence[Callback] = (), resume: bool = False,
    stop_after: int | None = None,
) -> dict:  # fmt: skip
    """Train `config`; with a `run`, record status, metrics, state and the exported adapter.

    The exported adapter is the best evaluation's (`TrainConfig.keep`); the summary says which
    step that was, and how it compares with the base model on the same validation split.
    `stop_after` stops the run (state ``cancelled``, checkpointed, resumable) once it reached
    that step: ZeroGPU trains a run that way, one chunk of steps per GPU call.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from qpa.config import DataConfig, ModelConfig, QPAConfig, TrainConfig
    >>> corpus = Path(tempfile.mkdtemp()) / "tiny.txt"
    >>> _ = corpus.write_text("\\n\\n".join(f"Sentence {i} of a tiny corpus." for i in range(40)))
    >>> config = RunConfig(
    ...     model=ModelConfig("tiny-llama"), qpa=QPAConfig(chunk_size=64, depth=2),
    ...     data=DataConfig(corpus=str(corpus), max_length=16),
    ...     train=TrainConfig(steps=2, eval_every=1, batch_size=4, cache_backbone=False))
    >>> summary = train(config)
    >>> summary["state"], summary["step"], summary["exported_step"] in (0, 1, 2)
    ('done', 2, True)
    """
    config = validate_config(config)
    emit = _emitter(run, [*callbacks, Recorder(config)])  # Recorder: for `estimate_run`
    try:
        if run is not None:
            run.set_status(
                "running", pid=os.getpid(), step=0, total_steps=config.train.steps, error=None
            )
            run.log(f"preparing {config.adapter.method} on {config.model.model}")
        tic = time.time()
        session = prepare(config, cache_dir=features_dir(), progress=reporter(run, emit))
        if run is not None:
            run.log(f"model and data ready in {time.time() - tic:.1f} s")
        base = base_metrics(session)
        if run is not None:
            run.set_status(base=base)
            run.log(f"base model: validation perplexity {base['headline_perplexity']:.4f} "
                    f"({base['headline']})")  # fmt: skip
        result = _loop(session, run, emit, resume, base, stop_after)
    except Exception as e:
        if run is not None:
            run.log(traceback.format_exc())
            run.set_status("failed", error=f"{type(e).__name__}: {e}", pid=None)
        raise
    return result


def base_metrics(session: Session) -> dict:
    """The base model's validation metrics on this session's split (adapter off), cached with
    the backbone rows; `headline`/`headline_perplexity` name the perplexity runs compare."""
    from qpa.training.rows import cache_key

    model = session.model
    bare = model.get_base_model() if hasattr(model, "get_base_model") else model
    key = cache_key(session.config.model.model, bare, session.config.train.perplexity,
                    session.splits.val)  # fmt: skip

    def compute() -> dict:
        with model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext():
            return evaluate_split(session, "val")

    metrics = cached_base_metrics(features_dir(), key, compute)
    name, value = headline(metrics)
    return {**metrics, "headline": name, "headline_perplexity": value}


def features_dir() -> Path:
    from qpa.models.loading import qpa_home

    return qpa_home() / "features"


def _emitter(run, callbacks: Sequence[Callback]) -> Callback:
    def emit(event: dict) -> None:
        if run is not None and event["event"] in ("step", "eval"):
            record = {k: v for k, v in event.items() if k != "event"}
            run.append_metrics(record)
            if event["event"] == "eval":
                run.log(eval_line(event))
        for cb in callbacks:
            cb(event)

    return emit


def _loop(
    session: Session, run, emit: Callback, resume: bool, base: dict, stop_after: int | None
) -> dict:
    cfg = session.config.train
    optimizer = make_optimizer(session)
    start_step, keeper = 0, BestKeeper(run)
    if resume:
        tensors, meta = run.load_state()
        _restore(session, optimizer, tensors)
        start_step, keeper = int(meta["step"]), BestKeeper.resume(run, int(meta.get("stale", 0)))
    n_trainable = session.n_trainable()
    if run is not None:
        run.set_status(
            "running",
            step=start_step,
            total_steps=cfg.steps,
            trainable_params=n_trainable,
            n_train=session.rows["train"].n_examples,
            n_val=session.rows["val"].n_examples,
            phase="training",
            message="training",
        )
        run.log(
            f"{n_trainable:,} trainable parameters; head-only cache: {session.head_only}; "
            f"training from step {start_step} to {cfg.steps}"
        )
    t0, step, state, val, early = time.time(), start_step, "done", None, False
    evaluated = None  # the step of the last evaluation, so a stop right after one repeats none
    if start_step == 0:
        keeper.update(session, 0, _eval(session, emit, 0, t0))
    with _Stopper(run) as stopper:
        while step < cfg.steps and not early:
            if stopper.stop or (stop_after is not None and step >= stop_after):
                state = "cancelled"
                break
            emit(
                {
                    "event": "step",
                    **train_step(session, optimizer, step),
                    "elapsed": time.time() - t0,
                }
            )
            step += 1
            if run is not None:
                run.set_status("running", step=step)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                val, evaluated = _eval(session, emit, step, t0), step
                keeper.update(session, step, val)
                _checkpoint(session, optimizer, run, step, keeper.stale)
                early = bool(cfg.patience) and keeper.stale >= cfg.patience
    if (state == "cancelled" and evaluated != step) or val is None:
        val = _eval(session, emit, step, t0)
        keeper.update(session, step, val)
        _checkpoint(session, optimizer, run, step, keeper.stale)
    summary = kept_summary(session, keeper, base, val, state, step)
    summary.update(trainable_params=n_trainable, wall_time=time.time() - t0, stopped_early=early)
    if "test" in session.rows:  # once, at the end, on the exported step: it chooses nothing
        summary.update({f"test_{k}": v for k, v in evaluate_split(session, "test").items()})
    if run is not None:
        _finish(session, run, state, summary)
    emit({"event": "done", **summary})
    return summary


def make_optimizer(session: Session) -> torch.optim.AdamW:
    cfg = session.config.train
    params = [p for _, p in session.trainable()]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_step(session: Session, optimizer: torch.optim.Optimizer, step: int) -> dict:
    """One optimizer step on the batch of `step`; returns its metrics."""
    cfg = session.config.train
    session.model.train()
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * lr_factor(step, cfg)
    tic = time.perf_counter()
    examples = batch_examples(session.rows["train"].n_examples, cfg.batch_size, cfg.seed, step)
    nll, _ = split_loss(session, "train", examples, assistant_only=cfg.loss_on == "assistant")
    if not nll.numel():  # prompts filled every example of the batch: learn from all its tokens
        nll, _ = split_loss(session, "train", examples)
    loss = nll.mean()
    value = loss.item()
    check_finite(value, "train", step + 1, session.config)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(
            [p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip
        )
    optimizer.step()
    seconds = time.perf_counter() - tic
    return {
        "step": step + 1,
        "total_steps": cfg.steps,
        "split": "train",
        "loss": value,
        "perplexity": perplexity(value),
        "lr": optimizer.param_groups[0]["lr"],
        "tokens_per_s": nll.numel() / seconds,
        "seconds": seconds,
    }


def eval_line(event: dict) -> str:
    """One evaluation as a log line.

    >>> eval_line({"step": 50, "total_steps": 300, "loss": 1.25, "perplexity": 3.49,
    ...            "assistant_perplexity": 5.1, "elapsed": 12.34})
    'eval at step 50/300 (12.3 s): val loss 1.2500, perplexity 3.490, replies 5.100'
    """
    replies = event.get("assistant_perplexity")
    return (
        f"eval at step {event['step']}/{event['total_steps']} ({event['elapsed']:.1f} s): "
        f"val loss {event['loss']:.4f}, perplexity {event['perplexity']:.3f}"
        + (f", replies {replies:.3f}" if replies is not None else "")
    )


def _eval(session: Session, emit: Callback, step: int, t0: float) -> dict:
    metrics = evaluate_split(session, "val")
    check_finite(metrics["loss"], "validation", step, session.config)
    emit(
        {
            "event": "eval",
            "step": step,
            "total_steps": session.config.train.steps,
            "split": "val",
            "elapsed": time.time() - t0,
            **metrics,
        }
    )
    return metrics


def _checkpoint(session: Session, optimizer, run, step: int, stale: int) -> None:
    if run is not None:
        meta = {"step": step, "method": session.config.adapter.method, "stale": stale}
        run.save_state(_state(session, optimizer), meta)


def _finish(session: Session, run, state: str, summary: dict) -> None:
    from qpa.adapters.export import export_adapter
    from qpa.adapters.model_card import make_hub_ready

    tic = time.time()
    export_adapter(
        session.model, session.tuner, run.adapter_dir, base_model=session.config.model.model
    )
    worse = "; worse than the base model" if summary["worse_than_base"] else ""
    run.log(f"adapter exported in {time.time() - tic:.1f} s; trained for {summary['wall_time']:.1f} s")
    run.log(
        f"{state} at step {summary['step']}: exported step {summary['exported_step']}, val "
        f"perplexity {summary['val_perplexity']:.4f} ({summary['base_headline']}: base "
        f"{summary['base_perplexity']:.4f}){worse}"
    )
    run.set_status(state, pid=None, step=summary["step"], result=summary)
    make_hub_ready(run.adapter_dir, run)  # the model card reads the final status


def evaluate(config: RunConfig, adapter_dir: str | Path | None = None) -> dict:
    """Validation loss/perplexity of the base model, or of it with an exported adapter."""
    config = validate_config(config)
    session = prepare(
        config,
        Path(adapter_dir) if adapter_dir else None,
        evaluate_only=True,
        cache_dir=features_dir(),
    )
    return evaluate_split(session, "val")
