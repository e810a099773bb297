"""MiniCanvas' prompts: the 22-word core vocabulary and the aliases of every concept, the prompt templates, the
word-level tokenizer, and the erase request for one concept (a digit or a style).

Aliases: real prompts reach a concept through numerals, misspellings, synonyms and other languages, and that is how
erased concepts come back (Pham et al., 2024; Zhang et al., 2024, UnlearnDiffAtk). With only the 22 core words a
discrete attack has nowhere to search, so the base model also learns three aliases per concept (a numeral or a
synonym, a misspelling, a foreign word) on a fraction of its captions, plus a few filler words that mean nothing.
Erase requests and the UnlearnCanvas metrics use the core words only, as an eraser that is told "three" would be.

Measured (ci, seed 0): the base model draws "a digit 3 / thre / trois" as a three 0.93-0.95 of the time. The jointly
trained text encoder maps each alias to features close to the word's (cosine 0.96-0.99 at its position), so ESD and
UCE erase the aliases with the word (0.05-0.125): on this testbed an alias is a synonym the eraser also removes,
and the attacks that recover the concept go through embeddings (Concept Inversion), not through aliases."""

from __future__ import annotations

from typing import Optional

from ...t2i.diffusion import EraseRequest

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


STYLES = ("plain", "inverted", "thick", "rotated")


SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")


# The UnlearnCanvas-style vocabulary (MiniCLIP keeps exactly this one).
CORE_VOCAB = SPECIAL_TOKENS + ("a", "digit", "in", "style") + DIGITS + STYLES


CORE_MAX_TOKENS = 8  # "<bos> a digit three in plain style <eos>"


# concept -> (numeral or synonym, misspelling, foreign word); every alias is one word of its own
ALIASES = {
    "zero": ("0", "zer0", "null"), "one": ("1", "onne", "uno"), "two": ("2", "twoo", "deux"),
    "three": ("3", "thre", "trois"), "four": ("4", "fuor", "quatre"), "five": ("5", "fiv", "cinq"),
    "six": ("6", "sixx", "seis"), "seven": ("7", "sevn", "sept"), "eight": ("8", "eigth", "huit"),
    "nine": ("9", "nien", "neuf"),
    "plain": ("simple", "plian", "normal"), "inverted": ("negative", "invertd", "umgekehrt"),
    "thick": ("bold", "thik", "grueso"), "rotated": ("turned", "rotatd", "gedreht"),
}


# words that name nothing: the base model sees them on some captions and learns to ignore them
FILLERS = ("the", "of", "image", "picture", "drawing", "number", "small", "nice", "with", "art")


VOCAB = CORE_VOCAB + tuple(alias for concept in DIGITS + STYLES for alias in ALIASES[concept]) + FILLERS


MAX_PROMPT_TOKENS = 12  # room for an attack's prefix tokens before "a digit three in plain style"


def concept_of(word: str) -> Optional[str]:
    """The core concept a word names (itself for a core concept word, the concept for an alias), else None."""
    if word in DIGITS or word in STYLES:
        return word
    return next((concept for concept, aliases in ALIASES.items() if word in aliases), None)


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


def build_tokenizer(vocabulary: tuple = VOCAB, max_length: int = MAX_PROMPT_TOKENS):
    """A real `PreTrainedTokenizerFast` with a word-level model, built offline with the `tokenizers` library."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(vocabulary)}
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
        model_max_length=max_length,
    )
