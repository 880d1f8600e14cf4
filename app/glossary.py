"""Every plain-language text of the studio in one place (so a translation is one file): the
glossary, the one plain sentence that leads each field's precise help, the tour, and the
"what am I looking at" panels, the Design one filled with the live numbers. No gradio.

>>> plain_help("rank", "LoRA rank r: A is r×d_in, B is d_out×r.").split(". ")[0]
'How many directions the adapter may change the layer in; more is richer and bigger'
>>> "174.70%" in design_explainer(rank=2, n_qubits=4, chunk_size=4096, depth=4,
...                               qpa_params=100, lora_params=57, ratio=1.747, ceiling=5,
...                               n_values=57, n_chunks=9)
True
"""

from __future__ import annotations

import html

EXPLAIN_TITLE = "What am I looking at?"

GLOSSARY = {
    "LoRA": "Low-Rank Adaptation: instead of changing a big weight matrix W, train two thin "
    "matrices B and A and add B·A to W. Only B and A are trained.",
    "rank r": "How thin LoRA's matrices are: B has r columns and A has r rows. The update B·A can "
    "change W in at most r independent directions; twice the rank, twice the LoRA parameters.",
    "QPA": "Quantum Parameter Adaptation: a small simulated quantum circuit and an MLP generate "
    "all of LoRA's numbers, so only the circuit's angles and the MLP are trained.",
    "qubit": "The circuit's unit of memory. N qubits have 2^N basis states, and measuring them "
    "gives 2^N probabilities: each extra qubit doubles how many numbers the circuit offers.",
    "chunk": "The block of numbers the MLP writes for one basis state. Chunks are laid end to end "
    "until every LoRA weight is covered, so a bigger chunk needs fewer basis states (qubits).",
    "depth L": "How many times the circuit's layer (a rotation on every qubit, then CNOTs) repeats; "
    "each repetition adds N trainable angles.",
    "rank ceiling": "All chunks come from one MLP, so the chunk matrix (chunks × chunk size) has a "
    "limited rank, at most the MLP's last width + 1. It caps how varied the generated weights "
    "can be, whatever training does.",
    "perplexity": "How surprised the model is by the validation text: e^(average loss per token). "
    "Lower is better; 1 would be certain, the vocabulary size a random guess.",
    "replies vs all tokens": "Chat data has prompts and replies. Perplexity on the replies "
    "measures what the model learns to answer; on all tokens it also counts the prompts, which "
    "the adapter is not trained to produce, so the two numbers differ.",
    "parameters": "The numbers training changes. Fewer trainable parameters mean a smaller "
    "adapter to store and send, not a faster model: the frozen base model is unchanged.",
}

PLAIN = {  # one plain sentence before each field's precise help
    "model": "The language model being adapted; its weights stay frozen.",
    "target_modules": "Which layers of the model get an adapter.",
    "rank": "How many directions the adapter may change the layer in; more is richer and bigger.",
    "chunk_size": "How many numbers the MLP writes per basis state of the circuit.",
    "n_qubits": "The circuit's size: each qubit doubles its basis states.",
    "depth": "How many times the circuit's layer repeats.",
    "hidden_sizes": "The widths of the small network that turns probabilities into weights.",
    "entangler": "How the qubits are linked inside each layer.",
    "activation": "The non-linearity between the MLP's layers.",
    "fourier_features": "Extra hints telling the MLP which chunk it is writing.",
    "start": "What the adapter does before any training.",
    "layers": "One generator for all layers, or one each.",
    "use_dora": "A LoRA variant that learns each row's length separately.",
    "dora_magnitude": "Where DoRA's row lengths come from.",
    "dora_norm": "Whether DoRA's row norm is trained through.",
    "shots": "Measure the circuit this many times, as real hardware must; 0 is exact.",
    "noise": "How much random error each qubit suffers per layer.",
    "steps": "How many updates training makes.",
    "batch_size": "How many examples each update looks at.",
    "lr": "How big each update is.",
    "eval_every": "How often the validation perplexity is measured.",
    "seed": "Fixes the randomness, so a run can be repeated.",
    "loss_on": "Which tokens training learns to predict.",
    "perplexity": "How padding counts in the perplexity.",
    "topics": "Which subjects of the chat corpus to train on.",
    "max_length": "The longest example, in tokens.",
    "max_examples": "How many examples to use at most.",
}


def plain_help(name: str, precise: str) -> str:
    """A field's help: one plain sentence, then the precise notation."""
    lead = PLAIN.get(name)
    return f"{lead} {precise}" if lead else precise


def _panel(paragraphs: list[str]) -> str:
    return '<div class="qpa-explain">' + "".join(f"<p>{p}</p>" for p in paragraphs) + "</div>"


def design_explainer(
    rank: int, n_qubits: int, chunk_size: int, depth: int, qpa_params: int, lora_params: int,
    ratio: float, ceiling: int, n_values: int, n_chunks: int,
) -> str:  # fmt: skip
    """The Design tab's "what am I looking at", with this shape's numbers."""
    verdict = (
        f"Here QPA trains <b>{qpa_params:,}</b> numbers against LoRA's <b>{lora_params:,}</b>: "
    ) + (
        f"<b class='qpa-warn'>{ratio:.2%}, more than LoRA</b>. The circuit and MLP cost more "
        "than the weights they write; raise the rank or lower the chunk size."
        if ratio > 1
        else f"<b>{ratio:.2%}</b> of LoRA's."
    )
    return _panel([
        f"<b>LoRA</b> adapts a layer with two thin matrices of <b>rank {rank}</b>: "
        f"{n_values:,} numbers in all. <b>QPA</b> does not train them; it <i>generates</i> them.",
        f"A circuit of <b>{n_qubits} qubits</b> repeated <b>{depth}</b> times is simulated; "
        f"measuring it gives 2^{n_qubits} = {2**n_qubits:,} probabilities. For each of the first "
        f"{n_chunks:,}, the MLP writes a <b>chunk</b> of {chunk_size:,} numbers; laid end to end "
        "they are LoRA's weights.",
        "More qubits give more chunks, so each chunk can be smaller, and the MLP's last layer "
        "(which has chunk-size outputs) shrinks: <b>more qubits, fewer parameters</b>.",
        f"All chunks come from one MLP, so whatever is learnt the chunk matrix has rank "
        f"<b>≤ {ceiling}</b>: the <b>rank ceiling</b>.",
        verdict,
    ])  # fmt: skip


TRAIN_EXPLAINER = _panel([
    "Launch trains the Design tab's shape on the chat data in the background; the cards and "
    "curves refresh by themselves, and each card has its own Stop.",
    "<b>Training loss</b> should fall. <b>Perplexity</b> is e^(loss) on held-out text: lower is "
    "better. On chat data it is measured on the <b>replies</b> (what the model should learn to "
    "say) and on <b>all tokens</b> (prompts too), so the two numbers differ.",
    "The matched LoRA baseline uses the same layers, rank, data and seed: the fair comparison.",
])  # fmt: skip
RUNS_EXPLAINER = _panel([
    "Every run is a folder: its settings, log, metrics and adapter. Pick runs to overlay their "
    "curves; QPA runs are drawn solid, LoRA baselines dashed.",
])  # fmt: skip
RESULTS_EXPLAINER = _panel([
    "Each point is a finished run: how many parameters it trained against the perplexity it "
    "reached. Lower and further left is better. The variance explorer shows why very large "
    "circuits are hard to train (barren plateaus): their gradients vanish.",
])  # fmt: skip
CHAT_EXPLAINER = _panel([
    "Talk to the base model or to a trained adapter. The adapter is an ordinary LoRA adapter "
    "now: no quantum simulation happens while chatting.",
])  # fmt: skip

TOUR = (
    ("① Design", "Shape the circuit. Move the rank, the chunk size or the qubits and watch the "
     "parameter counts, the circuit and the trade-off chart follow."),
    ("② Train", "Train QPA and its matched LoRA baseline and watch loss and perplexity fall."),
    ("③ Runs", "Every run with its settings, log and adapter; overlay their curves."),
    ("④ Results", "Parameters against perplexity over all finished runs."),
    ("⑤ Chat", "Chat with the base model and the adapters you trained."),
)  # fmt: skip


def tour_html() -> str:
    """The guided tour: one step per tab, then the glossary."""
    steps = "".join(f"<li><b>{t}</b>: {html.escape(s)}</li>" for t, s in TOUR)
    terms = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in GLOSSARY.items()
    )
    return (
        f'<div class="qpa-tour"><h3>A short tour</h3><ol>{steps}</ol>'
        f'<h3>Glossary</h3><dl class="qpa-glossary">{terms}</dl></div>'
    )
