"""Ring-A-Bell: "Ring-A-Bell! How Reliable are Concept Removal Methods for Diffusion Models?" (Tsai et al., ICLR
2024). Catalog id: `tsai2023ringabell`.

Follows chiayi-hsu/Ring-A-Bell@e4585ad, Get_Concept_Vector.ipynb (the concept vector) and InversePrompt.ipynb (the
genetic algorithm).

A model-agnostic attack: it never looks at the erased model. With the *original* model's text encoder E (full
last hidden states, (L, D) per prompt) it extracts the concept as a direction in embedding space and searches for a
discrete prompt whose embedding carries that direction; the prompt is then given to the erased model.

1. Concept vector: c = mean_i [E(p_i+) - E(p_i-)] over prompt pairs with and without the concept (official:
   "violent" / "peaceful" rewrites of 30 prompts, 5 copies each; here the request's forget prompts and their
   parallel neutral prompts, "a digit three in S style" / "a digit in S style" and "a digit three" / "").
2. For each source prompt p: target = E(p) + eta * c (official `cof` = 3; the sources are I2P prompts judged to
   show the concept, here the forget prompts, or the neutral prompts with `sources="neutral"`).
3. Genetic search over K tokens between bos and eos (the rest padding), fitness ||E(p~) - target||^2 summed over
   the whole (L, D) embedding: a random population; every generation the population is sorted by fitness and the
   best half kept; each kept parent is copied and, with probability `crossover_rate`, crossed at one random point
   with a random other parent (two children); each individual then, with probability `mutation_rate`, gets one
   random position replaced by a random token of the vocabulary (special tokens excluded, nothing else: the
   official code bans no concept word). After the last generation the best individual is decoded.
4. The attack's prompts: one decoded prompt per source prompt.

On MiniCanvas the prompt length is K <= 10 (MAX_PROMPT_TOKENS = 12 with bos and eos) and the vocabulary is the
testbed's 70 words; the population and the number of generations are scaled down (see methods/registry.yaml).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ...core.config import ConfigError, check_config
from ...core.seeding import make_generator
from ...t2i.diffusion import EditedDiffusion, EraseRequest, tokenize
from . import AttackOutput


@dataclass
class RingABellConfig:
    """Defaults are the official ones (chiayi-hsu/Ring-A-Bell@e4585ad, InversePrompt.ipynb "Parameters of
    Gene-Algo."); a testbed's adaptations are declared in methods/registry.yaml."""

    population_size: int = 200  # InversePrompt.ipynb: population_size = 200
    generations: int = 3000  # InversePrompt.ipynb: generation = 3000
    mutation_rate: float = 0.25  # InversePrompt.ipynb: mutateRate = 0.25
    crossover_rate: float = 0.5  # InversePrompt.ipynb: crossoverRate = 0.5
    length: int = 16  # InversePrompt.ipynb: length = 16 (K = 16; 75 for K = 77)
    eta: float = 3.0  # InversePrompt.ipynb: cof = 3 (the paper also reports eta 5 / 5.5 for violence)
    sources: str = "forget"  # the prompts attacked: I2P prompts showing the concept (forget) or "neutral" ones

    def __post_init__(self):
        check_config(self, {"sources": ("forget", "neutral")}, population_size=">=2", generations=">=1",
                     mutation_rate="[0,1]", crossover_rate="[0,1]", length=">=1", eta=">=0")


def special_ids(tokenizer) -> set:
    return set(tokenizer.all_special_ids)


def candidate_tokens(tokenizer) -> torch.Tensor:
    """The ids a mutation may draw: the whole vocabulary but special tokens (official: ids 1..49405 of CLIP, i.e.
    without bos / eos)."""
    special = special_ids(tokenizer)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in special], dtype=torch.long)


@torch.no_grad()
def concept_vector(text_encoder, tokenizer, with_concept: list, without_concept: list, device) -> torch.Tensor:
    """Step 1: mean over the prompt pairs of E(p+) - E(p-), an (L, D) tensor (Get_Concept_Vector.ipynb)."""
    positive = text_encoder(tokenize(tokenizer, with_concept).to(device))[0]
    negative = text_encoder(tokenize(tokenizer, without_concept).to(device))[0]
    return (positive - negative).mean(0)


def layout(tokens: torch.Tensor, tokenizer, max_length: int) -> torch.Tensor:
    """[bos, K tokens, eos, pad...] input ids for a population of (N, K) tokens (as the tokenizer lays out a K-word
    prompt; the official layout pads with CLIP's eos, which is also its pad token)."""
    n, k = tokens.shape
    ids = torch.full((n, max_length), tokenizer.pad_token_id, dtype=torch.long)
    ids[:, 0] = tokenizer.bos_token_id
    ids[:, 1:k + 1] = tokens
    ids[:, k + 1] = tokenizer.eos_token_id
    return ids


def fitness(text_encoder, ids: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Step 3's loss: ||E(p~) - target||^2 summed over positions and features, one value per individual."""
    return ((target - text_encoder(ids)[0]) ** 2).sum(dim=(1, 2))


def crossover(parents: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Every parent is kept; with probability `rate` it is crossed with a random parent at one point in 1..K of the
    [bos, tokens] row (1 = all of the other parent's tokens), giving two children right after it
    (InversePrompt.ipynb `crossover`; the draws are made for every parent at once)."""
    n, k = parents.shape
    crossed = torch.rand(n, generator=generator) < rate
    other = torch.randint(0, n, (n,), generator=generator)
    point = torch.randint(1, k + 1, (n,), generator=generator) - 1  # the official point, less the bos column
    head = torch.arange(k)[None, :] < point[:, None]
    first = torch.where(head, parents, parents[other])
    second = torch.where(head, parents[other], parents)
    keep = torch.stack([torch.ones(n, dtype=torch.bool), crossed, crossed], 1)  # parent, child, child
    return torch.stack([parents, first, second], 1)[keep]


def mutation(population: torch.Tensor, rate: float, vocabulary: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
    """With probability `rate` per individual, one random position gets a random token of `vocabulary`
    (InversePrompt.ipynb `mutation`)."""
    population = population.clone()
    n, k = population.shape
    mutated = torch.rand(n, generator=generator) < rate
    position = torch.randint(0, k, (n,), generator=generator)
    value = vocabulary[torch.randint(0, len(vocabulary), (n,), generator=generator)]
    rows = mutated.nonzero()[:, 0]
    population[rows, position[rows]] = value[rows]
    return population


def genetic_search(text_encoder, tokenizer, target: torch.Tensor, config: RingABellConfig, vocabulary: torch.Tensor,
                   generator: torch.Generator, max_length: int, device) -> tuple:
    """Step 3 for one target: (best tokens (K,), its loss, the best loss per generation, forward passes)."""
    rows = torch.randint(0, len(vocabulary), (config.population_size, config.length), generator=generator)
    population = vocabulary[rows]
    history, queries = [], 0
    for step in range(config.generations):
        scores = fitness(text_encoder, layout(population, tokenizer, max_length).to(device), target).cpu()
        queries += len(population)
        order = torch.argsort(scores, stable=True)
        history.append(float(scores[order[0]]))
        population = population[order][: config.population_size // 2]
        if step != config.generations - 1:
            population = mutation(crossover(population, config.crossover_rate, generator), config.mutation_rate,
                                  vocabulary, generator)
    return population[0], history[-1], history, queries


def decode(tokenizer, tokens: torch.Tensor) -> str:
    return " ".join(tokenizer.convert_ids_to_tokens(tokens.tolist()))


def attack(edited: EditedDiffusion, request: EraseRequest, config: RingABellConfig, seed: int,
           testbed) -> AttackOutput:
    start = time.perf_counter()
    original = testbed.base_model().components  # model-agnostic: the unerased text encoder only
    text_encoder, tokenizer, device = original.text_encoder, original.tokenizer, original.device
    max_length = tokenizer.model_max_length
    if config.length > max_length - 2:
        raise ConfigError(f"RingABellConfig.length must be <= {max_length - 2} (the tokenizer's {max_length} "
                          f"positions less bos and eos), got {config.length}")
    generator = make_generator(seed)
    vocabulary = candidate_tokens(tokenizer)

    # 1. the concept vector from the (forget, neutral) prompt pairs
    with torch.no_grad():
        vector = concept_vector(text_encoder, tokenizer, request.forget_prompts, request.neutral_prompts, device)
        sources = request.forget_prompts if config.sources == "forget" else request.neutral_prompts
        # 2. one target per source prompt; 3. a genetic search for each
        prompts, losses, queries, curves = [], [], 2 * len(request.forget_prompts), []
        for source in sources:
            target = text_encoder(tokenize(tokenizer, [source]).to(device))[0] + config.eta * vector
            queries += 1
            best, loss, history, used = genetic_search(text_encoder, tokenizer, target, config, vocabulary,
                                                       generator, max_length, device)
            prompts.append(decode(tokenizer, best))
            losses.append(loss)
            curves.append(history[:: max(1, len(history) // 20)])
            queries += used

    # 4. the discrete prompts, sampled on the erased model by the testbed
    return AttackOutput(
        prompts=prompts,
        queries=queries,
        info={"source_prompts": list(sources), "final_losses": losses, "loss_curves": curves,
              "concept_vector_norm": float(vector.norm()), "eta": config.eta,
              "wall_time_s": time.perf_counter() - start},
    )
