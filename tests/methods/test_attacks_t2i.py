"""Attack cards on tiny random MiniCanvas-shaped components: each card's defining computation, pinned.

One section per attack card (named after it)."""

import dataclasses

import pytest
import torch

from methods.attacks.t2i import AttackOutput
from methods.registry import load_registry
from methods.t2i.diffusion import EditedDiffusion, tokenize

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

    config = dataclasses.replace(REGISTRY.card("concept_inversion").build_config("minicanvas"), steps=5, batch_size=4)
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
