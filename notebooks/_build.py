"""Generate the method notebooks (`python notebooks/_build.py`); edit this script, not the .ipynb files.

Every notebook has the same structure: a papermill `parameters` cell, a short explanation of the algorithm, the
run (the same library call as `python -m methods run`), before/after sample grids, a metrics bar plot, and
`results/minicanvas/<method>/metrics.json` for the leaderboard. With `model` set to a Stable Diffusion 1.x path or
hub id, the notebook runs the method on it instead (samples only; the MiniCanvas judges do not apply).
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

EXPLANATIONS = {
    "esd": """# ESD: Erasing Concepts from Diffusion Models

*Gandikota et al., ICCV 2023* (catalog id `gandikota2023erasing`).

ESD fine-tunes the UNet so that, for a concept prompt $c$, it predicts what the frozen model predicts when guided
**away** from $c$:

$$\\epsilon_\\theta(x_t, c, t) \\leftarrow \\epsilon^*(x_t, n, t) - \\eta\\,[\\epsilon^*(x_t, c, t) - \\epsilon^*(x_t, n, t)]$$

$x_t$ comes from partially running the sampler on $c$ with the model being trained. **ESD-x** trains only
cross-attention (`attn2`), **ESD-u** everything else. On MiniCanvas the neutral prompt $n$ is the prompt with the
concept removed ("a digit in inverted style"), not "" (which would also erase the style); see `methods/esd.py`.""",
    "uce": """# UCE: Unified Concept Editing

*Gandikota et al., WACV 2024* (catalog id `gandikota2023unified`).

UCE edits every cross-attention key/value projection $W$ in closed form, so that the concept's token embeddings
$c_i$ produce what the anchor's embeddings produced and preserved embeddings $c_j$ keep their outputs:

$$W = \\Big(\\lambda W_{old} + \\sum_i W_{old} g_i c_i^\\top + s_p\\sum_j W_{old} c_j c_j^\\top\\Big)
\\Big(\\lambda I + \\sum_i c_i c_i^\\top + s_p\\sum_j c_j c_j^\\top\\Big)^{-1}$$

No training: milliseconds on MiniCanvas. The tokens from the concept to the end of the prompt are edited, because
CLIP's causal mask makes them all depend on the concept; see `methods/uce.py`.""",
    "ca": """# Concept Ablation

*Kumari et al., ICCV 2023* (catalog id `kumari2023ablating`).

Concept Ablation generates images $x^*$ of an anchor concept $c^*$ and trains the model so that the target prompt
$c$ predicts, on those noised images, what the anchor prompt predicts (model-based loss, target from the same
network with the gradient stopped):

$$\\mathcal L = \\mathbb E\\,\\|\\epsilon_\\theta(x^*_t, c, t) - \\mathrm{sg}[\\epsilon_\\theta(x^*_t, c^*, t)]\\|^2$$

Only the cross-attention key/value projections are trained (the official default for objects and styles); see
`methods/ca.py`.""",
    "sld": """# Safe Latent Diffusion (SLD)

*Schramowski et al., CVPR 2023* (catalog id `schramowski2022safe`).

SLD changes no weights. During sampling it adds a third UNet pass on a safety-concept prompt $S$ and subtracts a
masked direction towards $S$ inside the classifier-free guidance bracket:

$$\\bar\\epsilon = \\epsilon_\\varnothing + s_g\\big[(\\epsilon_p - \\epsilon_\\varnothing) - \\gamma_t\\big],\\quad
\\gamma_t = \\mu_t \\odot (\\epsilon_S - \\epsilon_\\varnothing) + s_m \\nu_t$$

with an element-wise mask $\\mu_t$ (threshold $\\lambda$, scale $s_S$), a warm-up of $\\delta$ steps and momentum
$\\nu_t$. On MiniCanvas the safety concept is "a digit three"; see `methods/sld.py`.""",
}

PARAMETERS = """# Parameters (papermill overrides these)
scale = "ci"  # "ci" or "full" (MiniCanvas size)
device = "auto"  # "auto", "cpu" or "cuda"
model = None  # None: MiniCanvas; or a Stable Diffusion 1.x path / hub id (samples only, no judge metrics)
seed = 0
forget = "three"  # a digit or a style on MiniCanvas; free text (e.g. "Van Gogh") on Stable Diffusion
anchor = None  # UCE / CA anchor (None: the testbed's default, or "" on Stable Diffusion)
out_dir = "results/minicanvas/{method}"  # repo-relative; where metrics.json and samples.png go"""

SETUP = """import sys
import time
from pathlib import Path

# make `methods` importable when papermill runs the notebook from notebooks/ or from the repository root
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "methods" / "registry.py").exists())
sys.path.insert(0, str(ROOT))

import matplotlib.pyplot as plt

from methods.registry import default_config, get_method
from methods.runner import plot_metrics, plot_sample_grid, run_minicanvas, run_stable_diffusion, write_outputs

METHOD = "{method}"
spec = get_method(METHOD)
print(spec.title, "| catalog id:", spec.catalog_id)
print(default_config(METHOD, None if model else "minicanvas", scale))"""

RUN = """notebook_start = time.perf_counter()
if model is None:
    # MiniCanvas: the base model and judge are trained once per machine and cached (safetensors)
    result = run_minicanvas(METHOD, forget, seed=seed, scale=scale, device=device, anchor=anchor)
else:
    # Stable Diffusion 1.x with the official defaults: samples only
    result = run_stable_diffusion(METHOD, model, forget, seed=seed, device=device, anchor=anchor)
    if out_dir == f"results/minicanvas/{METHOD}":  # keep SD samples out of the MiniCanvas leaderboard
        out_dir = f"results/stable-diffusion/{METHOD}"
out_path = write_outputs(result, ROOT / out_dir)
print("wrote", out_path / "metrics.json")"""

GRID = """fig = plot_sample_grid(result, f"{METHOD}: forget {forget!r} (same noise before and after)")
plt.show()"""

METRICS = """if result.metrics["metrics"] is not None:
    after, base = result.metrics["metrics"], result.metrics["base_metrics"]
    for key in ("UA", "IRA", "CRA", "FD", "forget_accuracy", "sampling_time_s"):
        print(f"{key:18s} base {base[key]:8.3f}   {METHOD} {after[key]:8.3f}")
    print(f"method wall time   {result.metrics['method_wall_time_s']:.2f} s")
    print("memory:", result.metrics["memory"])
    fig = plot_metrics(result)
    plt.show()
else:
    print("Stable Diffusion run: no judge metrics; see the sample grid above.")
print(f"notebook run time: {time.perf_counter() - notebook_start:.1f} s")"""


def build(method: str) -> nbformat.NotebookNode:
    parameters = new_code_cell(PARAMETERS.replace("{method}", method))
    parameters.metadata["tags"] = ["parameters"]
    cells = [
        new_markdown_cell(EXPLANATIONS[method]),
        parameters,
        new_code_cell(SETUP.replace("{method}", method)),
        new_markdown_cell("## Run\nThe same library call as `python -m methods run " + method + " --forget three`."),
        new_code_cell(RUN),
        new_markdown_cell("## Samples before and after"),
        new_code_cell(GRID),
        new_markdown_cell("## Metrics (UnlearnCanvas-style: UA, IRA, CRA; FD on judge features)"),
        new_code_cell(METRICS),
    ]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


def main() -> None:
    for method in EXPLANATIONS:
        path = HERE / f"{method}.ipynb"
        nbformat.write(build(method), path)
        print("wrote", path)


if __name__ == "__main__":
    main()
