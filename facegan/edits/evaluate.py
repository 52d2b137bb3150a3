"""Measuring edits (`facegan evaluate-edits`) with a classifier that did not find or calibrate them.

For each edit, over the same seeds at amounts −1, 0 and +1:
  * target: the measuring classifier's mean probability of the edit's attribute at each amount;
  * entanglement: the change (+1 minus −1) of the mean probability of every attribute;
  * identity drift: mean distance of an edited face to its unedited self in the embedding (the measuring
    classifier's L2-normalised penultimate features — no face-recognition network is available
    offline), divided by the mean distance between the unedited faces of different seeds;
  * quality: SWD (×10³, facegan.metrics) of the faces at −1 and +1 against real faces, beside the
    unedited faces' SWD;
  * the real faces' swing (with `reference`): the same classifier's mean probability on labelled real
    faces it never trained on, without and with the attribute. A small classifier trained with plain BCE
    gives a rare attribute low probabilities even on real faces that have it (Eyeglasses: 0.39), so a
    swing is read against this one: `swing_vs_real` 1.0 = the edit separates its faces as far as the
    labels separate real ones.
`render(seeds, edits)` makes the faces, so directions and a conditional generator are measured alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from facegan.edits.classifier import AttributeNet
from facegan.metrics.swd import swd

Render = Callable[[list[int], dict[str, float]], torch.Tensor]


def to_u8(images: torch.Tensor) -> torch.Tensor:
    return images.clamp(-1, 1).add(1).mul(127.5).add(0.5).clamp(0, 255).to(torch.uint8)


def evaluate_edits(
    render: Render,
    edits: list[str],
    net: AttributeNet,
    real_u8: np.ndarray | torch.Tensor,
    seeds: list[int],
    swd_seed: int = 0,
    reference: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """The measurements above for `edits` (names of the classifier's attributes), as a JSON-able dict;
    `reference` is `real_reference`'s result."""
    start = time.perf_counter()
    real = torch.as_tensor(np.asarray(real_u8[: len(seeds)]))
    if len(real) < len(seeds):
        raise ValueError(f"SWD needs as many real faces as seeds ({len(seeds)}), got {len(real)}")
    base = render(seeds, {})
    p0, f0 = net.predict(base)
    rolled = f0.roll(1, 0)  # each face against another seed's face
    between = float((f0 - rolled).norm(dim=1).mean())
    swd0 = swd(real, to_u8(base), seed=swd_seed)["swd"]
    rows: dict[str, Any] = {}
    for name in edits:
        attr = net.names.index(name)
        at: dict[str, Any] = {}
        for amount in (-1.0, 1.0):
            images = render(seeds, {name: amount})
            p, f = net.predict(images)
            at[f"{amount:+g}"] = {
                "p": p.mean(0),
                "drift": float((f - f0).norm(dim=1).mean()) / between,
                "swd": swd(real, to_u8(images), seed=swd_seed)["swd"],
            }
        lo, hi = at["-1"], at["+1"]
        delta = (hi["p"] - lo["p"]).tolist()
        others = [(abs(d), n, d) for n, d in zip(net.names, delta) if n != name]
        worst = max(others)
        rows[name] = {
            "target": [
                round(float(lo["p"][attr]), 3),
                round(float(p0[:, attr].mean()), 3),
                round(float(hi["p"][attr]), 3),
            ],
            "swing": round(float(hi["p"][attr] - lo["p"][attr]), 3),
            "entanglement": {n: round(d, 3) for n, d in zip(net.names, delta)},
            "most_entangled": [worst[1], round(worst[2], 3)],
            "identity_drift": [round(lo["drift"], 3), round(hi["drift"], 3)],
            "swd": [round(lo["swd"], 2), round(hi["swd"], 2)],
        }
        if reference is not None and name in reference:
            without, with_ = reference[name]
            rows[name]["real"] = [round(without, 3), round(with_, 3)]
            rows[name]["swing_vs_real"] = round(rows[name]["swing"] / max(with_ - without, 1e-6), 2)
    return {
        "edits": rows,
        "swd_unedited": round(swd0, 2),
        "count": len(seeds),
        "seconds": round(time.perf_counter() - start, 1),
    }


def real_reference(
    net: AttributeNet, real_u8: np.ndarray, labels: np.ndarray, label_names: list[str], edits: list[str]
) -> dict[str, list[float]]:
    """{edit: [mean probability on real faces labelled without it, on those labelled with it]} by `net`;
    `labels` (N, A) in {0, 1} over `label_names`. Give faces `net` never trained on (the other half)."""
    probs, _ = net.predict(torch.as_tensor(np.asarray(real_u8)).float().div(127.5).sub(1))
    out: dict[str, list[float]] = {}
    for name in edits:
        has = np.asarray(labels)[:, label_names.index(name)] > 0.5
        if has.all() or not has.any():
            continue  # no contrast among these faces: nothing to read a swing against
        p = probs[:, net.names.index(name)]
        out[name] = [float(p[torch.from_numpy(~has)].mean()), float(p[torch.from_numpy(has)].mean())]
    return out


def markdown(result: dict[str, Any], title: str = "") -> str:
    """The model card's table and entanglement matrix (the edits' own attributes) of `evaluate_edits`."""
    edits = list(result["edits"])
    real = all("real" in r for r in result["edits"].values())
    lines = [title] if title else []
    lines += [
        f"{result['count']} seeds; unedited SWD {result['swd_unedited']}.",
        "",
        "| edit | p(attr) at −1 / 0 / +1 | swing |"
        + (" real faces without / with | swing ÷ real's |" if real else "")
        + " most changed other attribute (Δp) | identity drift −1 / +1 | SWD −1 / +1 |",
        "|---|---|---|" + ("---|---|" if real else "") + "---|---|---|",
    ]
    for name, r in result["edits"].items():
        t, (other, d), (dl, dh), (sl, sh) = r["target"], r["most_entangled"], r["identity_drift"], r["swd"]
        versus = f" {r['real'][0]:.2f} / {r['real'][1]:.2f} | {r['swing_vs_real']:.2f} |" if real else ""
        lines.append(
            f"| {name} | {t[0]:.2f} / {t[1]:.2f} / {t[2]:.2f} | {r['swing']:+.2f} |{versus} {other} "
            f"({d:+.2f}) | {dl:.2f} / {dh:.2f} | {sl:.1f} / {sh:.1f} |"
        )
    lines += [
        "",
        "Entanglement: Δp of each attribute (column) from −1 to +1 of each edit (row).",
        "",
        "| edit | " + " | ".join(edits) + " |",
        "|---|" + "---|" * len(edits),
    ]
    for name, r in result["edits"].items():
        cells = [
            f"**{r['entanglement'][e]:+.2f}**" if e == name else f"{r['entanglement'][e]:+.2f}" for e in edits
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(result: dict[str, Any]) -> dict[str, float]:
    """One row of the method comparison: mean swing, mean |Δp| of the other edit attributes, mean
    identity drift and mean SWD at ±1."""
    rows = list(result["edits"].values())
    names = list(result["edits"])
    off = [abs(r["entanglement"][o]) for n, r in result["edits"].items() for o in names if o != n]
    return {
        "swing": round(float(np.mean([r["swing"] for r in rows])), 3),
        "min_swing": round(float(np.min([r["swing"] for r in rows])), 3),
        "entanglement": round(float(np.mean(off)), 3),
        "identity_drift": round(float(np.mean([r["identity_drift"] for r in rows])), 3),
        "swd": round(float(np.mean([r["swd"] for r in rows])), 2),
        "swd_unedited": result["swd_unedited"],
        **(
            {"swing_vs_real": round(float(np.mean([r["swing_vs_real"] for r in rows])), 2)}
            if all("swing_vs_real" in r for r in rows)
            else {}
        ),
    }
