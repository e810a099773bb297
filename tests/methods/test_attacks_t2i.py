"""Attack cards on tiny random MiniCanvas-shaped components: each card's defining computation, pinned.

One section per attack card (named after it)."""

import dataclasses

import pytest
import torch

from methods.attacks.t2i import AttackOutput
from methods.registry import load_registry
from methods.t2i.diffusion import EditedDiffusion, tokenize
from minicanvas_dummies import get_dummy_components

REGISTRY = load_registry()


class TinyTestbed:
    """What an attack may ask of its testbed: the unedited model."""

    def __init__(self, components):
        self.components = components

    def base_model(self):
        return EditedDiffusion(self.components)


def with_images(request, n: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    request.images = {prompt: torch.rand((n, 1, 8, 8), generator=generator) * 2 - 1 for prompt in request.forget_prompts}
    return request


def test_attack_output_holds_exactly_one_of_prompts_or_embeddings():
    with pytest.raises(ValueError, match="exactly one"):
        AttackOutput()
    with pytest.raises(ValueError, match="exactly one"):
        AttackOutput(prompts=["a"], embeddings=torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="must not be empty"):
        AttackOutput(prompts=[])


# --- concept_inversion ------------------------------------------------------------------------------------------
def test_concept_inversion_learns_only_the_new_token_row(components, request_three):
    from methods.attacks.t2i import concept_inversion as ci

    config = dataclasses.replace(REGISTRY.card("concept_inversion").build_config("minicanvas"), steps=5, batch_size=4,
                                 num_vectors=1)
    target = EditedDiffusion(components)
    before = {k: v.clone() for k, v in components.text_encoder.state_dict().items()}
    output = ci.attack(target, with_images(request_three), config, 0, TinyTestbed(components))

    # the target's own text encoder is untouched (the attack works on a copy with one more row)
    assert all(torch.equal(before[k], v) for k, v in components.text_encoder.state_dict().items())
    # the learned row moved away from its initializer ("number"), the output is the encoding of the prompts with
    # the token: every other row is the original one, so the same prompts re-encoded with the learned row match
    learned = torch.tensor(output.info["learned_embeddings"])[0]
    vocab = components.tokenizer.get_vocab()
    initial = components.text_encoder.get_input_embeddings().weight[vocab["number"]]
    assert not torch.allclose(learned, initial)
    assert output.prompts is None and output.embeddings.shape[0] == len(request_three.forget_prompts)
    assert output.info["prompts_with_token"][0] == "a digit <concept> in plain style"
    assert output.queries == 5 * 4

    import copy

    tokenizer = copy.deepcopy(components.tokenizer)
    tokenizer.add_tokens([ci.PLACEHOLDER])
    encoder = copy.deepcopy(components.text_encoder)
    encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        encoder.get_input_embeddings().weight[-1] = learned
        expected = encoder(tokenize(tokenizer, output.info["prompts_with_token"]))[0]
    assert torch.allclose(output.embeddings, expected, atol=1e-6)


def test_concept_inversion_objective_is_the_attacked_unets_denoising_loss(components):
    """The defining objective: the plain DDPM loss of the attacked UNet on the concept's images, conditioned on the
    prompt with the token (sqrt(a_t) x0 + sqrt(1 - a_t) eps written out by hand)."""
    from methods.attacks.t2i import concept_inversion as ci

    scheduler = components.fresh_scheduler()
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand((3, 1, 8, 8), generator=generator) * 2 - 1
    noise = torch.randn((3, 1, 8, 8), generator=generator)
    timesteps = torch.tensor([10, 500, 990])
    input_ids = tokenize(components.tokenizer, ["a digit three"] * 3)
    loss = ci.denoising_loss(components.unet, components.text_encoder, scheduler, clean, noise, timesteps, input_ids)
    alpha = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    noisy = alpha.sqrt() * clean + (1 - alpha).sqrt() * noise
    prediction = components.unet(noisy, timesteps, encoder_hidden_states=components.text_encoder(input_ids)[0]).sample
    assert torch.allclose(loss, ((prediction - noise) ** 2).mean(), atol=1e-6)


def test_concept_inversion_same_seed_same_token(components, request_three):
    from methods.attacks.t2i import concept_inversion as ci

    config = dataclasses.replace(REGISTRY.card("concept_inversion").build_config("minicanvas"), steps=3, batch_size=2)
    request = with_images(request_three)
    a = ci.attack(EditedDiffusion(components), request, config, 1, TinyTestbed(components))
    b = ci.attack(EditedDiffusion(components), request, config, 1, TinyTestbed(components))
    assert a.info["learned_embeddings"] == b.info["learned_embeddings"]


def test_concept_inversion_rejects_an_unknown_initializer(components, request_three):
    from methods.attacks.t2i import concept_inversion as ci

    config = dataclasses.replace(REGISTRY.card("concept_inversion").build_config("minicanvas"), initializer="zebra")
    with pytest.raises(ValueError, match="initializer 'zebra' is not a word"):
        ci.attack(EditedDiffusion(components), with_images(request_three), config, 0, TinyTestbed(components))


# --- shared by the hard-prompt attacks (unlearndiffatk, p4d) ----------------------------------------------------
def test_hard_prompts_encoding_from_token_rows_is_the_text_encoders_own(components):
    """The hooked encoder on the embedding rows of some ids gives exactly the encoder's output on those ids, and its
    gradient reaches the rows."""
    from methods.attacks.t2i import hard_prompts as hp

    tokenizer, encoder = components.tokenizer, components.text_encoder
    input_ids = hp.pad_ids(tokenizer, hp.word_ids(tokenizer, "3 trois a digit three"))
    rows = encoder.get_input_embeddings()(input_ids).clone().requires_grad_(True)
    hooked = hp.encode_token_embeddings(encoder, input_ids, rows)
    assert torch.allclose(hooked, encoder(input_ids)[0], atol=1e-6)
    hooked.sum().backward()
    assert rows.grad is not None and rows.grad.abs().sum() > 0
    assert not torch.allclose(hp.encode_token_embeddings(encoder, input_ids, rows.detach() * 0), hooked)
    # the words an attack may use: no special token; a prompt that does not fit is refused
    special = set(tokenizer.all_special_ids)
    assert not special & set(hp.candidate_ids(tokenizer).tolist())
    assert len(hp.candidate_ids(tokenizer)) == len(tokenizer) - len(special)
    with pytest.raises(ValueError, match="do not fit"):
        hp.pad_ids(tokenizer, hp.word_ids(tokenizer, "a b c d e f g h i j k"))


def test_hard_prompts_concept_word(request_three):
    from methods.t2i.diffusion import concept_word
    from methods.testbeds import minicanvas

    assert concept_word(request_three) == "three"
    assert concept_word(minicanvas.build_erase_request("plain")) == "plain"


# --- unlearndiffatk ---------------------------------------------------------------------------------------------
def _exact_simplex_projection(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection onto the probability simplex by sorting (Duchi et al., 2008), row by row."""
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1
    index = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype)
    rho = ((u - css / index) > 0).sum(-1, keepdim=True)
    theta = css.gather(-1, rho - 1) / rho
    return (v - theta).clamp(min=0)


def test_unlearndiffatk_bisection_is_the_euclidean_projection_onto_the_simplex():
    from methods.attacks.t2i.unlearndiffatk import project_simplex

    generator = torch.Generator().manual_seed(0)
    for scale in (0.01, 1.0, 5.0):
        v = torch.randn((4, 70), generator=generator, dtype=torch.float64) * scale
        projected = project_simplex(v, 1e-9)
        assert torch.allclose(projected.sum(-1), torch.ones(4, dtype=torch.float64), atol=1e-6)
        assert (projected >= 0).all() and (projected <= 1).all()
        assert torch.allclose(projected, _exact_simplex_projection(v), atol=1e-6)
    uniform = torch.full((3, 70), 1 / 70)
    assert torch.equal(project_simplex(uniform), uniform)  # already on the simplex: unchanged (official shortcut)


def test_unlearndiffatk_straight_through_sampling_and_timesteps():
    from methods.attacks.t2i.unlearndiffatk import official_timesteps, sample_one_hot

    p = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], requires_grad=True)
    one_hot = sample_one_hot(p, torch.Generator().manual_seed(0))
    assert one_hot[0].tolist() == [0.0, 1.0, 0.0] and one_hot[1, 1] == 0 and one_hot.sum() == 2
    grad = torch.tensor([[3.0, -0.5, -2.0], [0.2, 9.0, -9.0]])
    (one_hot * grad).sum().backward()
    assert torch.equal(p.grad, grad.clamp(-1, 1))  # the gradient passes straight through, clipped (hardtanh)
    assert official_timesteps(1000, 50) == list(range(10, 1000, 20))
    assert official_timesteps(1000, 8) == [62, 187, 312, 437, 562, 687, 812, 937]


def test_unlearndiffatk_loss_is_the_erased_unets_denoising_loss(components):
    from methods.attacks.t2i.unlearndiffatk import denoising_loss

    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn((1, 1, 8, 8), generator=generator), torch.randn((1, 1, 8, 8), generator=generator)
    alphas = components.scheduler.alphas_cumprod
    text = components.text_encoder(tokenize(components.tokenizer, ["a digit three"]))[0]
    noisy = alphas[310].sqrt() * x0 + (1 - alphas[310]).sqrt() * noise
    eps = components.unet(noisy, torch.tensor([310]), encoder_hidden_states=text).sample
    assert torch.allclose(denoising_loss(components.unet, text, x0, noise, 310, alphas), ((eps - noise) ** 2).mean())
    assert torch.allclose(denoising_loss(components.unet, text, x0, noise, 310, alphas, "l1"),
                          (eps - noise).abs().mean())


def _udiff_config(**changes):
    config = REGISTRY.card("unlearndiffatk").build_config("minicanvas", **REGISTRY.card("unlearndiffatk")
                                                          .on("minicanvas").smoke)
    return dataclasses.replace(config, **changes)


def test_unlearndiffatk_smoke_prefixes_every_forget_prompt(components, request_three):
    from methods.attacks.t2i import unlearndiffatk as ud

    config = _udiff_config(prompts="forget")
    output = ud.attack(EditedDiffusion(components), request_three, config, 0, TinyTestbed(components))
    again = ud.attack(EditedDiffusion(components), request_three, config, 0, TinyTestbed(components))
    assert output.prompts == again.prompts
    vocab = set(components.tokenizer.get_vocab())
    for attacked, prompt in zip(output.prompts, request_three.forget_prompts):
        words = attacked.split()
        assert " ".join(words[config.k:]) == prompt and len(words) == len(prompt.split()) + config.k
        assert all(word in vocab and not word.startswith("<") for word in words)
    # no judge here: every timestep block runs; each iteration is one UNet pass, plus the x0 samples
    steps = components.sampling.num_inference_steps
    assert output.queries == 5 * (config.num_timesteps * config.iterations + 2 * steps * config.x0_candidates)


def test_unlearndiffatk_checks_its_config_and_the_prompt_length(components, request_three):
    from methods.attacks.t2i import unlearndiffatk as ud
    from methods.core.config import ConfigError

    with pytest.raises(ConfigError, match="k"):
        ud.UnlearnDiffAtkConfig(k=0)
    with pytest.raises(ConfigError, match="criterion"):
        ud.UnlearnDiffAtkConfig(criterion="l3")
    with pytest.raises(ValueError, match="do not fit"):  # 5 words before "a digit three in plain style" + bos/eos
        ud.attack(EditedDiffusion(components), request_three, _udiff_config(k=5, prompts="forget"), 0, TinyTestbed(components))


# --- p4d --------------------------------------------------------------------------------------------------------
def test_p4d_projection_is_cosine_nearest_vocabulary_row():
    from methods.attacks.t2i.p4d import nearest_tokens

    table = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    queries = torch.tensor([[5.0, 0.1], [0.1, 0.2], [-0.01, -0.02], [3.0, 2.9]])
    assert nearest_tokens(queries, table).tolist() == [0, 1, 2, 0]
    assert torch.equal(nearest_tokens(table * 7, table), torch.arange(3))  # scale does not matter (cosine)


def test_p4d_k_inserts_a_free_token_before_every_k_prompt_tokens():
    from methods.attacks.t2i.p4d import P4DConfig, free_positions

    assert free_positions(P4DConfig(variant="k"), 6) == [0, 4, 8]  # "a digit three in plain style": 9 tokens
    assert free_positions(P4DConfig(variant="k"), 3) == [0, 4]
    assert free_positions(P4DConfig(variant="n", prompt_len=10), 6) == list(range(10))


def test_p4d_loss_matches_the_original_models_noise_prediction(components):
    """The objective: the erased UNet with the adversarial prompt against the original UNet with the target prompt,
    on the same x_t; zero when both are the same model and prompt, and only the erased side carries a gradient."""
    from methods.attacks.t2i.p4d import matching_loss
    from methods.t2i.diffusion import frozen_copy

    generator = torch.Generator().manual_seed(0)
    noisy, t = torch.randn((2, 1, 8, 8), generator=generator), torch.tensor([100, 800])
    target = components.text_encoder(tokenize(components.tokenizer, ["a digit three"] * 2))[0]
    other = components.text_encoder(tokenize(components.tokenizer, ["a digit five"] * 2))[0].requires_grad_(True)
    assert matching_loss(components.unet, components.unet, noisy, t, target, target) == 0
    erased = frozen_copy(components.unet)
    with torch.no_grad():
        next(erased.parameters()).add_(0.1)
    loss = matching_loss(erased, components.unet, noisy, t, other, target)
    expected = ((erased(noisy, t, encoder_hidden_states=other).sample
                 - components.unet(noisy, t, encoder_hidden_states=target).sample) ** 2).mean()
    assert torch.allclose(loss, expected)
    loss.backward()
    assert other.grad is not None and other.grad.abs().sum() > 0


def _p4d_config(**changes):
    config = REGISTRY.card("p4d").build_config("minicanvas", **REGISTRY.card("p4d").on("minicanvas").smoke)
    return dataclasses.replace(config, **changes)


@pytest.mark.parametrize("variant", ["n", "k"])
def test_p4d_smoke_returns_hard_prompts(components, request_three, variant):
    from methods.attacks.t2i import p4d

    config = _p4d_config(variant=variant, prompts="forget")
    output = p4d.attack(EditedDiffusion(components), request_three, config, 0, TinyTestbed(components))
    again = p4d.attack(EditedDiffusion(components), request_three, config, 0, TinyTestbed(components))
    assert output.prompts == again.prompts and len(output.prompts) == len(request_three.forget_prompts)
    vocab = set(components.tokenizer.get_vocab())
    for attacked, prompt in zip(output.prompts, request_three.forget_prompts):
        words = attacked.split()
        assert all(word in vocab and not word.startswith("<") for word in words)
        if variant == "n":
            assert len(words) == config.prompt_len
        else:  # the prompt's own words, in order, with a free word at positions 0, 4, 8
            free = p4d.free_positions(config, len(prompt.split()))
            assert [w for i, w in enumerate(words) if i not in free] == prompt.split()
    assert output.queries > 0


# --- ringabell --------------------------------------------------------------------------------------------------
def ringabell_config(**changes):
    config = REGISTRY.card("ringabell").build_config("minicanvas", **REGISTRY.card("ringabell").on("minicanvas").smoke)
    return dataclasses.replace(config, **changes)


def test_ringabell_concept_vector_is_the_mean_embedding_difference_of_the_pairs(components):
    from methods.attacks.t2i import ringabell as rb

    te, tok = components.text_encoder, components.tokenizer
    plus, minus = ["a digit three in plain style", "a digit three"], ["a digit in plain style", ""]
    vector = rb.concept_vector(te, tok, plus, minus, components.device)
    with torch.no_grad():
        e = lambda p: te(tokenize(tok, [p]))[0][0]  # noqa: E731
        expected = ((e(plus[0]) - e(minus[0])) + (e(plus[1]) - e(minus[1]))) / 2
    assert vector.shape == (tok.model_max_length, te.config.hidden_size)
    assert torch.allclose(vector, expected, atol=1e-6)


def test_ringabell_fitness_scores_the_prompt_as_the_tokenizer_lays_it_out(components):
    """The searched ids are the ids the decoded prompt gets when the erased model is prompted with it, and the
    fitness is ||E(p~) - target||^2 over the whole (L, D) embedding."""
    from methods.attacks.t2i import ringabell as rb

    te, tok = components.text_encoder, components.tokenizer
    vocab = tok.get_vocab()
    tokens = torch.tensor([[vocab[w] for w in ("trois", "the", "3")], [vocab[w] for w in ("a", "digit", "thre")]])
    ids = rb.layout(tokens, tok, tok.model_max_length)
    assert torch.equal(ids, tokenize(tok, [rb.decode(tok, row) for row in tokens]))
    target = torch.randn(tok.model_max_length, te.config.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        losses = rb.fitness(te, ids, target)
        by_hand = [float(((te(ids[i:i + 1])[0][0] - target) ** 2).sum()) for i in range(2)]
    assert losses.tolist() == pytest.approx(by_hand, rel=1e-5)


def test_ringabell_genetic_step_crossover_and_mutation():
    from methods.attacks.t2i import ringabell as rb

    parents = torch.arange(4 * 5).view(4, 5) + 100
    generator = torch.Generator().manual_seed(0)
    # crossover: every parent is kept, in order; rate 1 gives two complementary one-point children after each
    same = rb.crossover(parents, 0.0, generator)
    assert torch.equal(same, parents)
    crossed = rb.crossover(parents, 1.0, generator)
    assert crossed.shape == (12, 5) and torch.equal(crossed[::3], parents)
    for i in range(4):
        first, second = crossed[3 * i + 1], crossed[3 * i + 2]
        cuts = [(j, point) for j in range(4) for point in range(5)
                if torch.equal(first, torch.cat([parents[i, :point], parents[j, point:]]))
                and torch.equal(second, torch.cat([parents[j, :point], parents[i, point:]]))]
        assert cuts  # one cut point in 0..K-1 of the tokens (official 1..K over [bos, tokens])
    # mutation: rate 0 changes nothing; rate 1 changes at most one position per row, to a vocabulary token
    vocabulary = torch.tensor([7, 8, 9])
    assert torch.equal(rb.mutation(parents, 0.0, vocabulary, generator), parents)
    mutated = rb.mutation(parents, 1.0, vocabulary, generator)
    changed = mutated != parents
    assert (changed.sum(1) == 1).all() and set(mutated[changed].tolist()) <= {7, 8, 9}


def test_ringabell_genetic_search_recovers_a_reachable_target(components):
    """When the target is the embedding of some K-token prompt, the search finds a prompt with the same embedding."""
    from methods.attacks.t2i import ringabell as rb

    te, tok = components.text_encoder, components.tokenizer
    with torch.no_grad():
        target = te(tokenize(tok, ["trois digit"]))[0][0]
        config = ringabell_config(population_size=60, generations=40, length=2)
        best, loss, history, queries = rb.genetic_search(te, tok, target, config, rb.candidate_tokens(tok),
                                                         torch.Generator().manual_seed(0), tok.model_max_length,
                                                         components.device)
    assert rb.decode(tok, best) == "trois digit" and loss < 1e-6
    assert queries >= 40 * 30


def test_ringabell_uses_only_the_original_text_encoder(components, request_three):
    """Model-agnostic: the prompts depend on the testbed's unedited text encoder, never on the target."""
    from methods.attacks.t2i import ringabell as rb

    config = ringabell_config()
    testbed = TinyTestbed(components)
    a = rb.attack(EditedDiffusion(components), request_three, config, 0, testbed)
    other = get_dummy_components(seed=5)
    target = EditedDiffusion(dataclasses.replace(components, unet=None, text_encoder=other.text_encoder))
    b = rb.attack(target, request_three, config, 0, testbed)
    assert a.prompts == b.prompts and len(a.prompts) == len(request_three.forget_prompts)
    vocab = set(components.tokenizer.get_vocab()) - set(components.tokenizer.all_special_tokens)
    assert all(len(p.split()) == config.length and set(p.split()) <= vocab for p in a.prompts)
    assert a.queries > 0 and a.info["source_prompts"] == request_three.forget_prompts
    c = rb.attack(EditedDiffusion(components), request_three, config, 1, testbed)
    assert rb.attack(EditedDiffusion(components), request_three, config, 1, testbed).prompts == c.prompts


def test_ringabell_rejects_a_prompt_longer_than_the_tokenizer(components, request_three):
    from methods.attacks.t2i import ringabell as rb
    from methods.core.config import ConfigError

    with pytest.raises(ConfigError, match="length"):
        rb.attack(EditedDiffusion(components), request_three, ringabell_config(length=11), 0, TinyTestbed(components))
    with pytest.raises(ConfigError, match="mutation_rate"):
        ringabell_config(mutation_rate=1.5)


# --- mma_diffusion ----------------------------------------------------------------------------------------------
def mma_config(**changes):
    card = REGISTRY.card("mma_diffusion")
    return dataclasses.replace(card.build_config("minicanvas", **card.on("minicanvas").smoke), **changes)


def test_mma_diffusion_bans_the_concept_word_but_not_its_aliases(components):
    from methods.attacks.t2i import mma_diffusion as mma

    tok = components.tokenizer
    vocab = tok.get_vocab()
    banned = set(mma.banned_tokens(tok, ["three"]).tolist())
    assert vocab["three"] in banned and set(tok.all_special_ids) <= banned
    assert not {vocab[w] for w in ("3", "thre", "trois", "a", "digit")} & banned
    # substring rule of the official list ("nud" bans "nudity"): "in" bans every word that contains it
    assert {vocab["in"], vocab["inverted"], vocab["invertd"]} <= set(mma.banned_tokens(tok, ["in"]).tolist())


def test_mma_diffusion_pools_at_the_eos_token(components):
    from methods.attacks.t2i import mma_diffusion as mma

    te, tok = components.text_encoder, components.tokenizer
    ids = tokenize(tok, ["trois the 3", "a digit"])
    with torch.no_grad():
        hidden = te(ids)[0]
        pooled = mma.pooled(te, ids, tok.eos_token_id)
    assert torch.equal(pooled[0], hidden[0, 4]) and torch.equal(pooled[1], hidden[1, 3])


def test_mma_diffusion_token_gradient_is_the_one_hot_gradient_of_the_control_tokens(components):
    """d(1 - cos(pool(E(adv)), target)) / d one-hot of positions 1..n equals dL/d(token embeddings) @ W^T there."""
    from methods.attacks.t2i import mma_diffusion as mma

    te, tok = components.text_encoder, components.tokenizer
    ids = tokenize(tok, ["trois the 3 digit"])
    target = torch.randn(1, te.config.hidden_size, generator=torch.Generator().manual_seed(0))
    grad = mma.token_gradient(te, ids, slice(1, 5), target, tok.eos_token_id)

    captured = {}

    def keep(module, inputs, output):
        output = output.detach().requires_grad_(True)
        captured["embeds"] = output
        return output

    handle = te.get_input_embeddings().register_forward_hook(keep)
    with torch.enable_grad():
        loss = mma.cosine_loss(mma.pooled(te, ids, tok.eos_token_id), target).sum()
        (d_embeds,) = torch.autograd.grad(loss, captured["embeds"])
    handle.remove()
    expected = d_embeds[0, 1:5] @ te.get_input_embeddings().weight.T
    assert grad.shape == (4, len(tok))
    assert torch.allclose(grad, expected, atol=1e-6)
    assert float(mma.cosine_loss(target, target)) == pytest.approx(0.0, abs=1e-6)


def test_mma_diffusion_candidates_are_single_top_k_substitutions():
    from methods.attacks.t2i import mma_diffusion as mma

    grad = torch.randn(4, 20, generator=torch.Generator().manual_seed(0))
    control = torch.tensor([3, 4, 5, 6])
    banned = torch.tensor([0, 1, 2, 3])
    candidates = mma.sample_candidates(grad.clone(), control, banned, 16, 5, torch.Generator().manual_seed(1))
    normed = grad / grad.norm(dim=-1, keepdim=True)
    normed[:, banned] = float("inf")
    top = (-normed).topk(5, dim=1).indices
    for j, row in enumerate(candidates):
        position = j * 4 // 16  # official: arange(0, n, n / B)
        assert torch.equal(row[torch.arange(4) != position], control[torch.arange(4) != position])
        assert int(row[position]) in top[position].tolist() and int(row[position]) not in banned.tolist()


def test_mma_diffusion_gcg_lowers_the_loss_and_never_uses_a_banned_word(components, request_three):
    from methods.attacks.t2i import mma_diffusion as mma

    te, tok = components.text_encoder, components.tokenizer
    config = mma_config(steps=15, batch_size=32, topk=8, length=4)
    banned = mma.banned_tokens(tok, ["three"])
    allowed = torch.tensor([i for i in range(len(tok)) if i not in set(banned.tolist())])
    with torch.no_grad():
        target = mma.pooled(te, tokenize(tok, ["a digit three"]), tok.eos_token_id)
        start = allowed[torch.randint(0, len(allowed), (4,), generator=torch.Generator().manual_seed(2))]
        start_loss = float(mma.cosine_loss(mma.pooled(te, tokenize(tok, [mma.decode(tok, start)]),
                                                      tok.eos_token_id), target))
    prompt, loss, step, queries = mma.gcg(te, tok, target, config, allowed, banned, torch.Generator().manual_seed(2),
                                          components.device)
    assert loss < start_loss and "three" not in prompt.split() and len(prompt.split()) == 4
    assert queries == 15 * (1 + 32)

    output = mma.attack(EditedDiffusion(components), request_three, config, 0, TinyTestbed(components))
    assert len(output.prompts) == len(request_three.forget_prompts) and output.info["banned_words"] == ["three"]
    assert all("three" not in p.split() for p in output.prompts)
    again = mma.attack(EditedDiffusion(components), request_three, config, 0, TinyTestbed(components))
    assert again.prompts == output.prompts


def test_mma_diffusion_smoke_and_bad_config(components, request_three):
    from methods.attacks.t2i import mma_diffusion as mma
    from methods.core.config import ConfigError

    output = mma.attack(EditedDiffusion(components), request_three, mma_config(), 0, TinyTestbed(components))
    assert output.prompts and output.queries > 0
    with pytest.raises(ConfigError, match="length"):
        mma.attack(EditedDiffusion(components), request_three, mma_config(length=11), 0, TinyTestbed(components))
    with pytest.raises(ConfigError, match="topk"):
        mma_config(topk=0)
