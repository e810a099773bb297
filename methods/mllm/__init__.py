"""Multimodal-LLM unlearning methods on MiniProfiles (a miniature of MLLMU-Bench), one readable file each.

- `ga.py` Gradient Ascent, `graddiff.py` Gradient Difference, `kl.py` KL minimisation, `npo.py` NPO: the LLM-style
  baselines of MLLMU-Bench (`liu2024protecting`) and CLEAR (`dontsov2024clear`);
- `mmunlearner.py` MMUnlearner (`huo2025mmunlearner`): saliency-masked, geometry-constrained gradient ascent.

`MLLM_METHODS` maps each name to (config dataclass, unlearn function); `unlearn(model, task, config, callback)`
edits a LlavaForConditionalGeneration in place. `run_miniprofiles(method, seed, scale, out_dir, model, device)` runs
the whole benchmark for one method and writes `metrics.json` and `tradeoff.png`.
"""

from .pipeline import MLLM_METHODS, method_config, run_miniprofiles

__all__ = ["MLLM_METHODS", "method_config", "run_miniprofiles"]
