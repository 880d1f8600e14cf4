"""One explicit training loop for QPA-LoRA and plain LoRA, and perplexity evaluation.

Both methods share everything (targets, rank, data, seed, AdamW, schedule); they differ only in
what is trainable: the circuit angles and mapping MLP (QPA) or the LoRA matrices (LoRA).
Progress goes to callbacks as event dicts and, when a `Run` is given, to its directory.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import torch

from qpa.config import RunConfig
from qpa.training.base_metrics import cached_base_metrics
from qpa.training.best import BestKeeper, headline, kept_summary
from qpa.training.checkpoint import Stopper, restore_state, save_checkpoint
from qpa.training.distributed import world_for
from qpa.training.estimate import Recorder
from qpa.training.phases import reporter
from qpa.training.precision import grad_scaler
from qpa.training.row_stream import epoch_order
from qpa.training.rows import alike_rows
from qpa.training.session import EVAL_BATCH, Session, pick_device, prepare, split_loss
from qpa.training.validation import validate_config

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
def evaluate_split(session: Session, split: str = "val", batch_size: int = EVAL_BATCH) -> dict:
    """Token-level loss and perplexity over a whole split, all tokens and assistant tokens
    (processes training together each take every N-th batch, and add up their sums). The rows
    all examples share (`alike_rows`) are computed in the first example only."""
    session.model.eval()
    rows, protocol = session.rows[split], session.config.train.perplexity
    n, alike = rows.n_examples, alike_rows(getattr(session.splits, split), rows, protocol)
    sums = [0.0, 0, 0.0, 0]  # loss and rows, all and assistant

    def add(nll: torch.Tensor, assistant: torch.Tensor, times: int = 1) -> None:
        assistant = assistant.to(nll.device)
        sums[0] += times * nll.sum().item()
        sums[1] += times * nll.numel()
        sums[2] += times * nll[assistant].sum().item()
        sums[3] += times * int(assistant.sum())

    first = 1 if alike else 0
    if first and session.world.rank == 0:
        nll, assistant = split_loss(session, split, torch.tensor([0]))
        add(nll, assistant)
        add(nll[:alike], assistant[:alike], times=n - 1)  # the others' first `alike` rows
    for start in session.world.shard(range(first, n, batch_size)):
        examples = torch.arange(start, min(n, start + batch_size))
        add(*split_loss(session, split, examples, skip=alike))
    if session.world.size > 1:
        sums = session.world.total(sums)
    total, count, assistant_total, assistant_count = sums[0], int(sums[1]), sums[2], int(sums[3])
    loss = total / max(1, count)
    out = {"loss": loss, "perplexity": perplexity(loss), "tokens": count}
    if 0 < assistant_count < count:
        out["assistant_loss"] = assistant_total / assistant_count
        out["assistant_perplexity"] = perplexity(out["assistant_loss"])
    return out


def train(
    config: RunConfig, run=None, callbacks: Sequence[Callback] = (), resume: bool = False,
    stop_after: int | None = None,
) -> dict:  # fmt: skip
    """Train `config`; with a `run`, record status, metrics, state and the exported adapter.

    The exported adapter is the best evaluation's (`TrainConfig.keep`); the summary says which
    step that was, and how it compares with the base model on the same validation split. Under
    `accelerate launch` every process calls this; only rank 0 writes (`run` on the others is
    read for resuming only, see `qpa.training.distributed`). `stop_after` stops the run (state
    ``cancelled``, checkpointed, resumable) once it reached that step: ZeroGPU trains a run that
    way, one chunk of steps per GPU call.

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
    world = world_for(pick_device(config.train.device))
    writer = run if world.is_main else None  # the only process that writes the run folder
    # Recorder (for `estimate_run`): one process's throughput only
    emit = _emitter(writer, [*callbacks, *([Recorder(config)] if world.size == 1 else [])])
    try:
        tic = _started(writer, config, world.size)
        progress = reporter(writer, emit)
        session = prepare(config, cache_dir=features_dir(), progress=progress, world=world)
        if writer is not None:
            writer.log(f"model and data ready in {time.time() - tic:.1f} s")
        base = base_metrics(session)
        if writer is not None:
            writer.set_status(base=base)
            writer.log(f"base model: validation perplexity {base['headline_perplexity']:.4f} "
                       f"({base['headline']})")  # fmt: skip
        result = _loop(session, run, writer, emit, resume, base, stop_after)
        world.barrier()  # the others return once rank 0 has written the end of the run
    except Exception as e:
        if writer is not None:
            writer.log(traceback.format_exc())
            writer.set_status("failed", error=f"{type(e).__name__}: {e}", pid=None)
        raise
    return result


def _started(writer, config: RunConfig, processes: int) -> float:
    """Mark the run running (rank 0's folder); the time it started."""
    if writer is not None:
        steps, within = config.train.steps, f" in {processes} processes" * (processes > 1)
        writer.set_status("running", pid=os.getpid(), step=0, total_steps=steps, error=None)
        writer.log(f"preparing {config.adapter.method} on {config.model.model}{within}")
    return time.time()


def base_metrics(session: Session) -> dict:
    """The base model's validation metrics on this session's split (adapter off), cached with
    the backbone rows; `headline`/`headline_perplexity` name the perplexity runs compare."""
    from qpa.training.rows import cache_key

    model = session.model
    bare = model.get_base_model() if hasattr(model, "get_base_model") else model
    key = cache_key(session.config.model.model, bare, session.config.train.perplexity,
                    session.splits.val)  # fmt: skip
    if session.config.train.precision != "fp32":  # the forward ran in it: measured apart
        key = f"{key}-{session.config.train.precision}"

    def compute() -> dict:
        with model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext():
            return evaluate_split(session, "val")

    metrics = cached_base_metrics(features_dir(), key, compute, session.world)
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
    session: Session, run, writer, emit: Callback, resume: bool, base: dict, stop_after: int | None
) -> dict:
    """Train from step 0 (or `run`'s checkpoint), evaluate, keep the best; `writer` (the run
    on rank 0, else None) records it all."""
    cfg, world = session.config.train, session.world
    optimizer, scaler = make_optimizer(session), grad_scaler(session.device, cfg.precision)
    start_step, keeper = _resumed(session, optimizer, run, writer) if resume else (0, None)
    keeper = keeper or BestKeeper(writer)
    world.prepare_step(session)  # DDP: after the restore, so every rank wraps equal tensors
    n_trainable = session.n_trainable()
    if writer is not None:
        writer.set_status(
            "running",
            step=start_step,
            total_steps=cfg.steps,
            trainable_params=n_trainable,
            n_train=session.rows["train"].n_examples,
            n_val=session.rows["val"].n_examples,
            phase="training",
            message="training",
        )
        writer.log(
            f"{n_trainable:,} trainable parameters; head-only cache: {session.head_only}; "
            f"training from step {start_step} to {cfg.steps}"
        )
    t0, step, state, val, early = time.time(), start_step, "done", None, False
    evaluated = None  # the step of the last evaluation, so a stop right after one repeats none
    if start_step == 0:
        keeper.update(session, 0, _eval(session, emit, 0, t0, writer))
    with Stopper(writer) as stopper:
        while step < cfg.steps and not early:
            stop = world.agree(stopper.stop)  # every rank stops after the same step
            if stop or (stop_after is not None and step >= stop_after):  # a ZeroGPU chunk's end
                state = "cancelled"
                break
            metrics = train_step(session, optimizer, step, scaler)
            emit({"event": "step", **metrics, "elapsed": time.time() - t0})
            step += 1
            if writer is not None:
                writer.set_status("running", step=step)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                val, evaluated = _eval(session, emit, step, t0, writer), step
                keeper.update(session, step, val)
                save_checkpoint(session, optimizer, writer, step, keeper.stale)
                early = bool(cfg.patience) and keeper.stale >= cfg.patience
    if (state == "cancelled" and evaluated != step) or val is None:
        val = _eval(session, emit, step, t0, writer)
        keeper.update(session, step, val)
        save_checkpoint(session, optimizer, writer, step, keeper.stale)
    summary = kept_summary(session, keeper, base, val, state, step)
    summary.update(trainable_params=n_trainable, wall_time=time.time() - t0, stopped_early=early)
    if world.size > 1:
        summary["processes"] = world.size
    if "test" in session.rows:  # once, at the end, on the exported step: it chooses nothing
        summary.update({f"test_{k}": v for k, v in evaluate_split(session, "test").items()})
    if writer is not None:
        _finish(session, writer, state, summary)
    emit({"event": "done", **summary})
    return summary


def _resumed(session: Session, optimizer, run, writer) -> tuple[int, BestKeeper]:
    """Restore `run`'s checkpoint into the session and optimizer: its step and best keeper
    (which saves new bests only through `writer`)."""
    tensors, meta = run.load_state()
    restore_state(session, optimizer, tensors)
    stale = int(meta.get("stale", 0))
    return int(meta["step"]), BestKeeper.resume(run, stale, writer is not None)


def make_optimizer(session: Session) -> torch.optim.AdamW:
    cfg = session.config.train
    params = [p for _, p in session.trainable()]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_step(
    session: Session, optimizer: torch.optim.Optimizer, step: int, scaler=None
) -> dict:
    """One optimizer step on the (global) batch of `step`; returns its metrics. `scaler`: the
    fp16 gradient scaler (`qpa.training.precision.grad_scaler`)."""
    cfg, world = session.config.train, session.world
    session.model.train()
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * lr_factor(step, cfg)
    tic = time.perf_counter()
    examples = batch_examples(session.rows["train"].n_examples, cfg.batch_size, cfg.seed, step)
    world.before_step(session, step)
    loss, value, n_rows = world.step_loss(session, examples, cfg.loss_on == "assistant")
    check_finite(value, "train", step + 1, session.config)
    optimizer.zero_grad(set_to_none=True)
    (loss if scaler is None else scaler.scale(loss)).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)  # clip the true gradients
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(
            [p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip
        )
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)  # skipped when the fp16 gradients overflowed
        scaler.update()
    seconds = time.perf_counter() - tic
    return {
        "step": step + 1,
        "total_steps": cfg.steps,
        "split": "train",
        "loss": value,
        "perplexity": perplexity(value),
        "lr": optimizer.param_groups[0]["lr"],
        "tokens_per_s": n_rows / seconds,
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


def _eval(session: Session, emit: Callback, step: int, t0: float, writer=None) -> dict:
    digest = session.world.check_agreement(session)  # before the evaluation's own generation
    if digest is not None and writer is not None:
        writer.log(f"{session.world.size} processes agree at step {step}: trainable tensors and "
                   f"the weights generated last are identical (sha256 {digest[:16]})")  # fmt: skip
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
