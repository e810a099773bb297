"""SLUG: Single Layer Unlearning Gradient (Cai, Tan and Asif, ICML 2025).

Follows CSIPlab/SLUG@59629a2, src/clip/unlearn/calc_grad.py (the gradients), src/clip/unlearn_slug.py (layer
importance, gradient alignment, Pareto front, binary search of the step) and notebooks/experiment_vision_language.ipynb
(the transformers CLIPModel version: the layer picked on the front and the whole-layer update).

1. One pass over the forget pairs: g_f = mean over batches of the gradient of -(1 - cos(f_I(x), f_T(t))) (the forget
   loss is the negated cosine-embedding loss). One pass over the retain pairs: g_r = mean gradient of CLIP's
   contrastive loss.
2. For every weight of each tower (biases, the logit scale, position and other embeddings excluded):
   importance = ||g_f|| / ||theta|| and alignment = |cos(g_r, g_f)|. The Pareto front keeps the weights no other
   weight beats on both (lower alignment and higher importance).
3. The layer: the deepest text-encoder layer on the front (the notebook's default); the whole layer is updated
   (q, k, v together; fc1, fc2 together).
4. One step theta_l <- theta_l + r * g_f[l] (r < 0: down the cosine). r starts at -(||theta_l|| / ||g_f[l]||) / 10
   and is found by binary search (10 evaluations): while the forget set's zero-shot top-k accuracy is above the
   target the step doubles (or bisects towards the known upper bound), once it reaches the target it bisects down.
   The final step is the smallest one that reached the target (the last one tried if none did).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..core.config import check_config
from ..core.seeding import make_generator
from .edited import CLIPTask, batches, contrastive_loss, image_features, same_caption, text_features


@dataclass
class SLUGConfig:
    batch_size: int = 16  # CSIPlab/SLUG@59629a2, scripts/run_compute_grad.sh (--batch-size=16)
    retain_batches: Optional[int] = None  # None: one pass over the retain pairs (calc_grad.py: one epoch)
    initial_ratio_divisor: float = 10.0  # unlearn_slug.py INITIAL_RATIO_DIVISOR
    max_iterations: int = 10  # unlearn_slug.py MAX_ITERATIONS
    search_topk: int = 5  # unlearn_slug.py: the search watches fgt_acc@5
    search_target: float = 0.0  # ... and stops shrinking the step once it is 0
    layer_rule: str = "deepest_text"  # experiment_vision_language.ipynb: the deepest language layer on the front
    whole_layer: bool = True  # the notebook updates q, k, v (or fc1, fc2) together

    def __post_init__(self):
        check_config(self, {"layer_rule": ("deepest_text", "deepest_vision", "most_important")}, batch_size=">=1",
                     retain_batches=">=1", initial_ratio_divisor=">0", max_iterations=">=1", search_topk=">=1",
                     search_target="[0,1]")


def excluded(name: str) -> bool:
    """unlearn_slug.py get_important_layers: bias, logit_scale, position and embedding weights are not candidates."""
    return "bias" in name or "logit_scale" in name or "position" in name or "embedding" in name


def is_vision(name: str) -> bool:
    return name.startswith("vision_model.") or name.startswith("visual_projection")


def mean_gradients(model, task: CLIPTask, pairs, forget: bool, batch_size: int, max_batches: Optional[int],
                   seed: int) -> dict:
    """calc_grad.py: gradients summed over one pass and divided by the number of batches."""
    grads = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    generator = make_generator(seed)
    chunks = batches(len(pairs), batch_size, generator)[:max_batches]
    model.train()
    for index in chunks:
        image = image_features(model, task.pixels(pairs.images[index]))
        text = text_features(model, task.caption_tokens(pairs.captions[index]))
        if forget:
            # the cosine-embedding loss mean(1 - cos), negated for the forget split
            loss = -(1 - (image * text).sum(dim=-1)).mean()
        else:
            logits = model.logit_scale.exp() * image @ text.t()
            loss = contrastive_loss(logits, same_caption(pairs.captions[index]))
        model.zero_grad(set_to_none=True)
        loss.backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                grads[name] += p.grad.detach()
    model.zero_grad(set_to_none=True)
    return {name: g / max(1, len(chunks)) for name, g in grads.items()}


def pareto_front(points: list) -> list:
    """unlearn_slug.py identify_pareto: index i is kept unless some j has x_j < x_i and y_j > y_i."""
    return [i for i, (x, y) in enumerate(points)
            if not any(x2 < x and y2 > y for j, (x2, y2) in enumerate(points) if j != i)]


def rank_layers(model, forget_grads: dict, retain_grads: dict) -> dict:
    """part -> [(name, alignment, importance)] on the Pareto front, in the official ranking order (by alignment)."""
    params = dict(model.named_parameters())
    scores = {}
    for name, p in params.items():
        g_f, g_r = forget_grads[name], retain_grads[name]
        if excluded(name) or p.ndim == 0 or float(g_f.norm()) == 0:
            continue
        importance = float(g_f.norm()) / float(p.detach().norm())
        alignment = abs(float(F.cosine_similarity(g_r.flatten(), g_f.flatten(), dim=0, eps=1e-6)))
        scores[name] = (alignment, importance)
    ranked = sorted(scores.items(), key=lambda item: item[1][0], reverse=True)
    front = {}
    for part, keep in (("vision", is_vision), ("language", lambda n: not is_vision(n))):
        names = [(n, s) for n, s in ranked if keep(n)]
        indices = pareto_front([s for _, s in names])
        front[part] = [(names[i][0], names[i][1][0], names[i][1][1]) for i in indices]
    return front


def layer_number(name: str) -> int:
    match = re.search(r"\.layers\.(\d+)\.", name)
    return int(match.group(1)) if match else -1


def choose_layer(front: dict, rule: str) -> str:
    """The notebook's default: the deepest text-encoder layer on the front (ties: the first in ranking order)."""
    if rule == "most_important":
        candidates = front["vision"] + front["language"]
        return max(candidates, key=lambda item: item[2])[0]
    part, prefix = ("language", "text_model.encoder.layers") if rule == "deepest_text" else \
        ("vision", "vision_model.encoder.layers")
    candidates = [name for name, _, _ in front[part] if prefix in name] or [name for name, _, _ in front[part]]
    if not candidates:
        raise ValueError(f"SLUG found no {part} weight on the Pareto front")
    deepest = max(layer_number(name) for name in candidates)
    return next(name for name in candidates if layer_number(name) == deepest)


def layer_group(name: str, names: set) -> list:
    """The notebook's whole-layer update: q, k, v together, fc1 and fc2 together, else the weight alone."""
    for group in (("q_proj", "k_proj", "v_proj"), ("fc1", "fc2")):
        for member in group:
            if f".{member}." in name:
                return [n for n in (name.replace(f".{member}.", f".{other}.") for other in group) if n in names]
    return [name]


def unlearn(model, task: CLIPTask, config: SLUGConfig, seed: int = 0) -> dict:
    if len(task.forget) == 0:
        raise ValueError("SLUG needs forget pairs for its gradient")
    # 1. one forget gradient and one retain gradient
    forget_grads = mean_gradients(model, task, task.forget, True, config.batch_size, None, seed)
    retain_grads = mean_gradients(model, task, task.retain, False, config.batch_size, config.retain_batches, seed + 1)
    # 2-3. importance / alignment, Pareto front, the layer
    front = rank_layers(model, forget_grads, retain_grads)
    layer = choose_layer(front, config.layer_rule)
    params = dict(model.named_parameters())
    group = layer_group(layer, set(params)) if config.whole_layer else [layer]
    original = {name: params[name].detach().clone() for name in group}
    ratio = float(original[layer].norm()) / float(forget_grads[layer].norm())

    def forget_accuracy(step: float) -> float:
        with torch.no_grad():
            for name in group:
                params[name].copy_(original[name] + step * forget_grads[name])
        return task.zero_shot_accuracy(model, task.forget.images, task.forget_labels, topk=config.search_topk)

    # 4. binary search of the step size
    low, high, step = 0.0, float("inf"), -(ratio / config.initial_ratio_divisor)
    search, best = [], None
    for _ in range(config.max_iterations):
        accuracy = forget_accuracy(step)
        search.append({"step": step, "forget_topk_acc": accuracy})
        if accuracy <= config.search_target:
            best = step if best is None or abs(step) < abs(best) else best
            high = step
            step = (low + high) / 2
        else:
            low = step
            step = (low + high) / 2 if high != float("inf") else step * 2
    final = best if best is not None else search[-1]["step"]
    forget_accuracy(final)
    return {"layer": layer, "updated": group, "step": final, "reached_target": best is not None,
            "front": {part: [name for name, _, _ in items] for part, items in front.items()}, "search": search}
