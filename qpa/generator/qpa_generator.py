"""QPA's parameter generator: circuit angles + mapping MLP → a flat vector of M weights.

n_chunks = ⌈M / chunk_size⌉ basis states are used; the circuit needs N = ⌈log₂ n_chunks⌉
qubits (or more, if asked). Each state's (bits, post-processed probability) row becomes one
chunk; the chunks are concatenated, cut to M values and centred (paper §3.2). The centring is
folded into the last layer's bias (`centered_output`), so it costs no pass over the M values.

>>> from qpa.config import PAPER_MAPPING, QPAConfig
>>> gen = QPAGenerator(204_100, QPAConfig(chunk_size=2048, depth=8, **PAPER_MAPPING))
>>> gen.n_qubits, gen.n_chunks, gen.param_counts()["total"], gen.max_rank
(7, 100, 106264, 9)
>>> gen().shape
torch.Size([204100])
>>> qubits_needed(204_100, 2048), chunk_for_qubits(204_100, 8)  # and back: 8 qubits, chunks of
(7, 1024)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from qpa.config import QPAConfig
from qpa.generator.circuit import make_circuit
from qpa.generator.mapping import MappingModel, basis_bits, index_features, postprocess, random_bits


def qubits_needed(n_values: int, chunk_size: int) -> int:
    """Fewest qubits whose 2^N basis states give ⌈n_values / chunk_size⌉ chunks (at least 1)."""
    n_chunks = math.ceil(n_values / chunk_size)
    return max(1, math.ceil(math.log2(n_chunks)))


def chunk_for_qubits(n_values: int, n_qubits: int) -> int:
    """The smallest power-of-two chunk size whose 2^N chunks hold `n_values` weights.

    >>> chunk_for_qubits(204_100, 7), chunk_for_qubits(204_100, 8)
    (2048, 1024)
    """
    return 1 << max(0, math.ceil(math.log2(math.ceil(n_values / 2**n_qubits))))


def check_qubits(n_values: int, config: QPAConfig) -> int:
    """The qubit count to use; raises if `config.n_qubits` is too few for `n_values`."""
    need = qubits_needed(n_values, config.chunk_size)
    if config.n_qubits == 0:
        return need
    if config.n_qubits < need:
        have = 2**config.n_qubits * config.chunk_size
        min_chunk = math.ceil(n_values / 2**config.n_qubits)
        raise ValueError(
            f"`n_qubits` = {config.n_qubits} gives {2**config.n_qubits} chunks of "
            f"{config.chunk_size:,} = {have:,} values, fewer than the {n_values:,} LoRA weights; "
            f"use ≥ {need} qubits or a chunk size ≥ {min_chunk:,}."
        )
    return config.n_qubits


def centered_output(features: torch.Tensor, last: nn.Linear, n_values: int) -> torch.Tensor:
    """last(features), flattened, cut to `n_values` and centred, with no extra pass over them.

    The mean of the kept values is linear in small tensors (the feature and weight sums, the
    bias), so it is subtracted from the bias and the Linear's output comes out centred: the
    centring costs a few tiny ops instead of passes over M values forward and backward.
    """
    weight = last.weight  # (chunk_size, h)
    bias = last.bias if last.bias is not None else weight.new_zeros(weight.shape[0])
    full, rest = divmod(n_values, weight.shape[0])  # whole chunks kept, values of the last one
    total = features[:full].sum(0) @ weight.sum(0) + full * bias.sum()
    if rest:
        total = total + features[full] @ weight[:rest].sum(0) + bias[:rest].sum()
    out = F.linear(features, weight, bias - total / n_values)  # (n_chunks, chunk_size)
    return out.reshape(-1)[:n_values]  # (M,)


class QPAGenerator(nn.Module):
    """Generates `n_values` weights from N·L circuit angles and the mapping MLP."""

    def __init__(self, n_values: int, config: QPAConfig):
        super().__init__()
        if n_values < 1:
            raise ValueError(f"Nothing to generate: {n_values} weights requested.")
        self.config = config
        self.n_values = n_values
        self.n_qubits = check_qubits(n_values, config)
        self.n_chunks = math.ceil(n_values / config.chunk_size)
        self.circuit = make_circuit(self.n_qubits, config)  # exact, noisy and/or sampled
        extra = index_features(self.n_chunks, config.fourier_features)  # (n_chunks, 2F)
        self.mapping = MappingModel(
            self.n_qubits, config.hidden_sizes, config.chunk_size, config.activation, extra.shape[1]
        )
        self.register_buffer("bits", basis_bits(self.n_qubits, self.n_chunks), persistent=False)
        self.register_buffer("extra", extra, persistent=False)
        # rank of the (n_chunks × chunk_size) matrix of chunks can never exceed this
        self.max_rank = min(self.n_chunks, config.chunk_size, self.mapping.rank_ceiling())
        # `pairing` = "random" draws from torch's global generator unless given one: processes
        # training together seed one alike each step (`qpa.training.distributed`)
        self.pairing_rng: torch.Generator | None = None

    def forward(self) -> torch.Tensor:
        c = self.config
        probs = self.circuit()  # (2^N,)
        x = postprocess(probs, c.gamma, c.beta, c.alpha)[: self.n_chunks]  # (n_chunks,)
        if c.pairing == "matched":
            bits = self.bits  # (n_chunks, N)
        else:
            bits = random_bits(self.n_qubits, self.n_chunks, self.pairing_rng)  # (n_chunks, N)
        rows = torch.cat([bits.to(x), x.unsqueeze(1), self.extra.to(x)], dim=1)  # (n_chunks, ·)
        features = self.mapping.body(rows)  # (n_chunks, hidden_sizes[-1])
        return centered_output(features, self.mapping.last, self.n_values)  # (M,)

    def param_counts(self) -> dict[str, int]:
        """Trainable parameters by part, counted from the modules themselves."""
        counts = {
            "circuit": sum(p.numel() for p in self.circuit.parameters()),
            "mapping": sum(p.numel() for p in self.mapping.body.parameters()),
            "last_layer": sum(p.numel() for p in self.mapping.last.parameters()),
        }
        counts["total"] = sum(counts.values())
        return counts
