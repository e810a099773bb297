"""MiniCanvas' prompts: the 22-word vocabulary, the prompt templates, the word-level tokenizer, and the erase
request for one concept (a digit or a style)."""

from __future__ import annotations

from typing import Optional

from ...t2i.diffusion import EraseRequest

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


STYLES = ("plain", "inverted", "thick", "rotated")


SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")


VOCAB = SPECIAL_TOKENS + ("a", "digit", "in", "style") + DIGITS + STYLES


MAX_PROMPT_TOKENS = 8  # "<bos> a digit three in plain style <eos>"


def full_prompt(digit: str, style: str) -> str:
    return f"a digit {digit} in {style} style"


def object_only_prompt(digit: str) -> str:
    """Style dropped: also a training prompt (attribute dropout), and the concept's own prompt."""
    return f"a digit {digit}"


def style_only_prompt(style: str) -> str:
    """Object dropped: a training prompt (attribute dropout); the 'neutral' version of an object prompt."""
    return f"a digit in {style} style"


def concept_axis(concept: str) -> str:
    """'object' for a digit word, 'style' for a style word; ValueError otherwise."""
    if concept in DIGITS:
        return "object"
    if concept in STYLES:
        return "style"
    raise ValueError(f"unknown concept {concept!r} for minicanvas; choose one of: {', '.join(DIGITS + STYLES)}")


def default_anchor(concept: str) -> str:
    """The concept a forgotten one is mapped to by UCE and CA.

    Testbed adaptation: the papers use a broader concept ("" or a superclass). Here the object-free prompt draws a
    random digit that is often the erased one (UA 0.73-0.94 across runs with it, measured), so
    a fixed other concept of the same axis is the stable anchor: "eight" for digits, "plain" for styles.
    """
    if concept_axis(concept) == "object":
        return "eight" if concept != "eight" else "zero"
    return "plain" if concept != "plain" else "thick"


def build_erase_request(concept: str, anchor: Optional[str] = None) -> EraseRequest:
    """Prompts for erasing one digit or one style (see `EraseRequest` for the meaning of each list)."""
    axis = concept_axis(concept)
    anchor = anchor or default_anchor(concept)
    if concept_axis(anchor) != axis or anchor == concept:
        raise ValueError(f"anchor {anchor!r} must be another concept of the same axis as {concept!r}")
    if axis == "object":
        others = [d for d in DIGITS if d != concept]
        forget = [full_prompt(concept, s) for s in STYLES] + [object_only_prompt(concept)]
        neutral = [style_only_prompt(s) for s in STYLES] + [""]
        anchors = [full_prompt(anchor, s) for s in STYLES] + [object_only_prompt(anchor)]
        preserve = (
            [full_prompt(d, s) for d in others for s in STYLES]
            + [object_only_prompt(d) for d in others]
            + [style_only_prompt(s) for s in STYLES]
        )
        concept_prompt = object_only_prompt(concept)
    else:
        others = [s for s in STYLES if s != concept]
        forget = [full_prompt(d, concept) for d in DIGITS] + [style_only_prompt(concept)]
        neutral = [object_only_prompt(d) for d in DIGITS] + [""]
        anchors = [full_prompt(d, anchor) for d in DIGITS] + [style_only_prompt(anchor)]
        preserve = (
            [full_prompt(d, s) for d in DIGITS for s in others]
            + [style_only_prompt(s) for s in others]
            + [object_only_prompt(d) for d in DIGITS]
        )
        concept_prompt = style_only_prompt(concept)
    return EraseRequest(forget, neutral, anchors, preserve, concept_prompt)


def build_tokenizer():
    """A real `PreTrainedTokenizerFast` with a word-level model, built offline with the `tokenizers` library."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(VOCAB)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        model_max_length=MAX_PROMPT_TOKENS,
    )
