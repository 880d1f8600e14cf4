"""The QPA circuit drawn as SVG: wires, one R_Y box per qubit and the CNOT ladder (or ring),
each block repeated L times (all blocks drawn when L is small, else one block marked "×L").

>>> svg = circuit_svg(3, 2)
>>> svg.count("R<tspan"), svg.count('class="cnot"')
(6, 4)
"""

from __future__ import annotations

from html import escape

ALL_BLOCKS_UP_TO = 2  # draw every block for L ≤ this, else one block boxed as ×L
INK, ACCENT, SOFT = "#334155", "#7c3aed", "#ede9fe"


def _geometry(n_qubits: int) -> tuple[float, float]:
    """(wire spacing, box size) that keep tall circuits within about 420 px."""
    gap = max(14.0, min(34.0, 400.0 / max(1, n_qubits)))
    return gap, min(26.0, gap * 0.8)


def _ry(x: float, y: float, box: float, label: str) -> str:
    font = max(7.0, box * 0.42)
    return (
        f'<rect x="{x:.1f}" y="{y - box / 2:.1f}" width="{box * 1.3:.1f}" height="{box:.1f}" rx="4" '
        f'fill="{SOFT}" stroke="{ACCENT}" stroke-width="1.2"><title>{escape(label)}</title></rect>'
        f'<text x="{x + box * 0.65:.1f}" y="{y + font * 0.35:.1f}" font-size="{font:.1f}" '
        f'text-anchor="middle" fill="{ACCENT}" font-weight="600">R<tspan font-size="{font * 0.7:.1f}" '
        f'dy="{font * 0.25:.1f}">Y</tspan></text>'
    )


def _cnot(x: float, y_control: float, y_target: float, r: float) -> str:
    return (
        f'<g class="cnot"><line x1="{x:.1f}" y1="{y_control:.1f}" x2="{x:.1f}" y2="{y_target:.1f}" '
        f'stroke="{INK}" stroke-width="1.3"/>'
        f'<circle cx="{x:.1f}" cy="{y_control:.1f}" r="{r * 0.35:.1f}" fill="{INK}"/>'
        f'<circle cx="{x:.1f}" cy="{y_target:.1f}" r="{r:.1f}" fill="white" stroke="{INK}" stroke-width="1.3"/>'
        f'<line x1="{x - r:.1f}" y1="{y_target:.1f}" x2="{x + r:.1f}" y2="{y_target:.1f}" stroke="{INK}" stroke-width="1.3"/>'
        f'<line x1="{x:.1f}" y1="{y_target - r:.1f}" x2="{x:.1f}" y2="{y_target + r:.1f}" stroke="{INK}" stroke-width="1.3"/></g>'
    )


def _block(x: float, ys: list[float], box: float, layer: int, entangler: str) -> tuple[str, float]:
    """One block starting at `x`: R_Y on each wire, then the CNOTs; returns (svg, its width)."""
    parts = [_ry(x, y, box, f"R_Y(θ[{layer},{k}])") for k, y in enumerate(ys)]
    step, r = max(9.0, box * 0.6), max(4.0, box * 0.3)
    cx = x + box * 1.3 + step
    pairs = [(k, k + 1) for k in range(len(ys) - 1)]
    if entangler == "ring" and len(ys) >= 2:
        pairs.append((len(ys) - 1, 0))
    for control, target in pairs:
        parts.append(_cnot(cx, ys[control], ys[target], r))
        cx += step
    return "".join(parts), cx - x


def circuit_svg(n_qubits: int, depth: int, entangler: str = "ladder") -> str:
    """An SVG drawing of the circuit for `n_qubits` wires and `depth` blocks."""
    gap, box = _geometry(n_qubits)
    top, left = 34.0, 64.0
    ys = [top + gap * (k + 0.5) for k in range(n_qubits)]
    shown = depth if depth <= ALL_BLOCKS_UP_TO else 1
    parts, x = [], left + 12
    for layer in range(shown):
        svg, width = _block(x, ys, box, layer, entangler)
        if shown == 1 and depth > 1:
            parts.append(
                f'<rect x="{x - 8:.1f}" y="{top - 12:.1f}" width="{width + 10:.1f}" '
                f'height="{gap * n_qubits + 18:.1f}" rx="8" fill="none" stroke="{ACCENT}" '
                f'stroke-dasharray="5 4" stroke-width="1.2"/>'
                f'<text x="{x + width - 4:.1f}" y="{top - 17:.1f}" font-size="13" font-weight="700" '
                f'text-anchor="end" fill="{ACCENT}">× L = {depth}</text>'
            )
        parts.append(svg)
        x += width + 14
    end = x + 4
    for k, y in enumerate(ys):
        label_font = max(8.0, min(13.0, gap * 0.45))
        parts.insert(
            0, f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{end:.1f}" y2="{y:.1f}" stroke="#94a3b8"/>'
        )
        parts.append(
            f'<text x="{left - 6:.1f}" y="{y + label_font * 0.35:.1f}" font-size="{label_font:.1f}" '
            f'text-anchor="end" fill="{INK}">q{k} |0⟩</text>'
        )
    parts.append(
        f'<text x="{end + 6:.1f}" y="{top + gap * n_qubits / 2 + 4:.1f}" font-size="12" fill="{INK}">'
        f'→ 2<tspan dy="-5" font-size="9">{n_qubits}</tspan><tspan dy="5"> probabilities</tspan></text>'
    )
    width, height = end + 130, top + gap * n_qubits + 14
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="100%" style="max-width:{max(width, 360):.0f}px;max-height:460px" '
        f'font-family="ui-sans-serif, system-ui, sans-serif" role="img" '
        f'aria-label="QPA circuit, {n_qubits} qubits, {depth} blocks">{"".join(parts)}</svg>'
    )
