"""Generate the MLLM method notebooks (`python notebooks/mllm/_build.py [--execute]`); edit this script, not the
.ipynb files.

Writes `notebooks/{ga,graddiff,kl,npo,mmunlearner}.ipynb`. Each has a papermill `parameters` cell, a short
explanation of the algorithm and its loss, the run (`methods.mllm.run_miniprofiles`, which writes
`results/miniprofiles/<method>/metrics.json` and `tradeoff.png`), the results tables and the forget / retain
trade-off plot. `--execute` runs them in place with papermill (scale "ci") and prints the time of each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parent

TESTBED = """**Testbed.** MiniProfiles, a download-free miniature of MLLMU-Bench (`liu2024protecting`): 40 fictitious
people (procedural faces, 6 views, facts asked with the image and by name), 20 "celebrities" and 20 world facts that are
never forgotten, and colour questions on unseen faces; a tiny `LlavaForConditionalGeneration` (CLIP + Llama,
~0.5M parameters) fine-tuned until it memorises the profiles. 10% of the people are forgotten, in 3 random splits;
the reference is a retrain on the retain people only (the oracle). Accuracy is multiple-choice accuracy (8 options
scored by likelihood, chance 0.125), pooled over the visual and text-only questions."""

EXPLANATIONS = {
    "ga": """# Gradient Ascent (GA) on MiniProfiles

*Baseline of MLLMU-Bench (catalog id `liu2024protecting`) and CLEAR (`dontsov2024clear`).*

GA reverses fine-tuning on the forget set $\\mathcal D_f$ by climbing the answer tokens' cross-entropy:

$$\\min_\\theta\\; -\\mathcal L_{\\text{NLL}}(\\mathcal D_f), \\qquad
\\mathcal L_{\\text{NLL}} = -\\frac{1}{|\\text{answer tokens}|}\\sum \\log p_\\theta(y_t \\mid x, y_{<t})$$

Nothing anchors the rest of the model, so forgetting comes with collateral damage: MLLMU-Bench reports that GA
degrades retain and real-world knowledge. Defaults: AdamW, linear decay, clip 1.0, a whole-forget-set batch per
step; see `methods/mllm/ga.py` for the source of each.""",
    "graddiff": """# Gradient Difference (GradDiff) on MiniProfiles

*Baseline of MLLMU-Bench (catalog id `liu2024protecting`) and CLEAR (`dontsov2024clear`).*

GA on the forget set plus ordinary training on the retain set $\\mathcal D_r$:

$$\\min_\\theta\\; -\\gamma\\,\\mathcal L_{\\text{NLL}}(\\mathcal D_f)
+ \\alpha\\,\\mathcal L_{\\text{NLL}}(\\mathcal D_r), \\qquad \\gamma = \\alpha = 1$$

One summed loss per step (open-unlearning, CLEAR); MLLMU-Bench's script alternates forget and retain optimizer
steps instead. See `methods/mllm/graddiff.py`.""",
    "kl": """# KL minimisation on MiniProfiles

*Baseline of MLLMU-Bench (catalog id `liu2024protecting`) and CLEAR (`dontsov2024clear`).*

GA on the forget set while the retain answers' next-token distributions stay those of the fine-tuned model
$\\theta_0$ (the TOFU definition):

$$\\min_\\theta\\; -\\mathcal L_{\\text{NLL}}(\\mathcal D_f)
+ \\mathbb E_{s\\sim\\mathcal D_r}\\,
\\mathrm{KL}\\big(p_{\\theta_0}(\\cdot\\mid s)\\,\\|\\,p_\\theta(\\cdot\\mid s)\\big)$$

The KL is taken at the retain answer positions. MLLMU-Bench's script also adds the retain NLL
(`retain_nll_weight=1`). See `methods/mllm/kl.py`.""",
    "npo": """# Negative Preference Optimization (NPO) on MiniProfiles

*Zhang et al., 2024 (arXiv 2404.05868); baseline of MLLMU-Bench (catalog id `liu2024protecting`) and CLEAR
(`dontsov2024clear`).*

NPO keeps the "dispreferred" half of DPO, relative to the frozen fine-tuned model $\\pi_{ref}$:

$$\\mathcal L_{\\text{NPO}} = -\\frac{2}{\\beta}\\,\\mathbb E_{\\mathcal D_f}
\\log\\sigma\\Big(-\\beta\\log\\frac{\\pi_\\theta(y\\mid x)}{\\pi_{ref}(y\\mid x)}\\Big),
\\qquad \\text{loss} = \\mathcal L_{\\text{NPO}} + \\alpha\\,\\mathcal L_{\\text{NLL}}(\\mathcal D_r)$$

It tends to GA as $\\beta\\to 0$, and its gradient fades once $\\pi_\\theta(y\\mid x)$ has dropped below
$\\pi_{ref}$, so it collapses more slowly than GA. Defaults follow the NPO paper and open-unlearning (per-sequence
log-ratio, $\\beta=0.1$, retain NLL with $\\alpha=1$); MLLMU-Bench uses the batch-mean token NLL, $\\beta=0.4$, no
retain term and a retain-trained reference. See `methods/mllm/npo.py`.""",
    "mmunlearner": """# MMUnlearner on MiniProfiles

*Huo et al., ACL 2025 Findings (catalog id `huo2025mmunlearner`).*

A saliency mask restricts gradient ascent to the weights that matter more for the forget set than for what must
be preserved. With diagonal Fisher estimates (mean squared per-sample gradients of the NLL),

$$s = \\frac{F_{\\text{forget}} + 10^{-15}}{F_{\\text{preserve}} + 10^{-15}}, \\qquad m = \\mathbb 1(s \\ge 1)$$

where the vision tower and projector are scored against the retain visual questions, and the language model
against those plus the text-only questions to keep. Forget steps ascend $\\mathcal L_{\\text{NLL}}(\\mathcal D_f)$
with the gradient multiplied by $m$; they are interleaved with ordinary descent steps on retain questions.

The paper erases only the *visual* pattern of an entity and keeps its textual facts; this card scores
MLLMU-Bench's task (forget the whole profile), so the default forget set has both modalities, and
`config_overrides={"forget_modalities": ("visual",)}` runs the paper's task. See `methods/mllm/mmunlearner.py`.""",
}

PARAMETERS = """# Parameters (papermill overrides these)
scale = "ci"  # "ci" or "full" (MiniProfiles size)
device = "auto"  # "auto", "cpu" or "cuda"
model = None  # None: the tiny LLaVA trained locally; or a LLaVA checkpoint path / hub id (fine-tuned on the profiles)
seed = 0  # picks the forget splits and the unlearning batches
out_dir = "results/miniprofiles/{method}"  # repo-relative; metrics.json and tradeoff.png go there"""

SETUP = """import sys
import time
import warnings
from pathlib import Path

# make `methods` importable when papermill runs the notebook from notebooks/ or from the repository root
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "methods" / "mllm" / "__init__.py").exists())
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

import transformers
from IPython.display import Image, Markdown, display

from methods.mllm import method_config, run_miniprofiles
from methods.mllm.pipeline import summary_markdown, table_markdown

transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars in the outputs
METHOD = "{method}"
print(method_config(METHOD, pretrained=model is not None))"""

RUN = """notebook_start = time.perf_counter()
# The vanilla model and the retain-only oracles are fine-tuned once per machine and cached (safetensors).
metrics = run_miniprofiles(METHOD, seed=seed, scale=scale, out_dir=ROOT / out_dir, model=model, device=device)
print(f"run time {metrics['wall_time_s']:.1f} s, unlearning {metrics['unlearn_time_s']['mean']:.1f} s per split, "
      f"peak RSS {metrics['peak_rss_mb']:.0f} MB")"""

RESULTS = """display(Markdown(summary_markdown(metrics)))
display(Markdown(f"Forget-quality gap = mean |method - oracle| over the forget and forget-paraphrase metrics. "
                 f"Vanilla checkpoint sha256 `{metrics['checkpoint']['sha256'][:16]}...`"))"""

DETAILS = """display(Markdown("**After unlearning** (mean ± std over splits)\\n\\n" + table_markdown(metrics)))
display(Markdown("**Retrain oracle**\\n\\n" + table_markdown(metrics, "oracle_table")))"""

PLOT = """display(Image(filename=str(ROOT / out_dir / "tradeoff.png")))
print(f"notebook run time: {time.perf_counter() - notebook_start:.1f} s")"""

READING = """How to read it: each line follows one forget split from the fine-tuned model (star) through the unlearning
steps to the final model (dot); triangles are the retrain oracles, the target. Forget accuracy well below the
oracle's means the model now avoids the right answer (over-unlearning, itself a detectable trace). MC accuracy here
is on the trained profile questions of the forget people and of 12 retain people; the tables use every question."""


def build(method: str) -> nbformat.NotebookNode:
    parameters = new_code_cell(PARAMETERS.replace("{method}", method))
    parameters.metadata["tags"] = ["parameters"]
    cells = [
        new_markdown_cell(EXPLANATIONS[method] + "\n\n" + TESTBED),
        parameters,
        new_code_cell(SETUP.replace("{method}", method)),
        new_markdown_cell(f"## Run\nThe same library call as `methods.mllm.run_miniprofiles({method!r}, ...)`."),
        new_code_cell(RUN),
        new_markdown_cell("## Results\nHeadline: MC accuracy pooled over visual and text-only questions."),
        new_code_cell(RESULTS),
        new_markdown_cell("### Every split, question type and metric\nMC accuracy, generation exact match and "
                          "ROUGE-L, and the cloze (fill-in-the-blank) score."),
        new_code_cell(DETAILS),
        new_markdown_cell("## Forget / retain trade-off"),
        new_code_cell(PLOT),
        new_markdown_cell(READING),
    ]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


def execute(paths: list) -> dict:
    """Run each notebook in place with papermill (scale ci); returns {notebook: seconds}."""
    import papermill

    times = {}
    for path in paths:
        start = time.perf_counter()
        papermill.execute_notebook(str(path), str(path), parameters={"scale": "ci"}, cwd=str(NOTEBOOKS),
                                   kernel_name="python3", progress_bar=False)  # fmt: skip
        times[path.name] = time.perf_counter() - start
        print(f"executed {path.name} in {times[path.name]:.1f} s", flush=True)
    print(f"all {len(paths)} notebooks: {sum(times.values()):.1f} s")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run the notebooks in place with papermill (ci)")
    parser.add_argument("methods", nargs="*", default=list(EXPLANATIONS), help="subset of: " + ", ".join(EXPLANATIONS))
    args = parser.parse_args()
    unknown = [m for m in args.methods if m not in EXPLANATIONS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(EXPLANATIONS)}")
    paths = []
    for method in args.methods:
        path = NOTEBOOKS / f"{method}.ipynb"
        nbformat.write(build(method), path)
        paths.append(path)
        print("wrote", path)
    if args.execute:
        execute(paths)


if __name__ == "__main__":
    main()
