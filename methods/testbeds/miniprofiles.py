"""MiniProfiles: a miniature of MLLMU-Bench that needs no download and trains on CPU in about a minute.

MLLMU-Bench (catalog id `liu2024protecting`) fine-tunes LLaVA on 500 fictitious profiles (a portrait plus facts) and
153 real celebrities, then asks each profile's questions with the image (visual QA) and by name without it (text QA).
After unlearning a 5-15% forget split it scores four sets: Forget, Test (forget people, new images, paraphrased
questions), Retain and Real Celebrity, with multiple-choice classification, free generation (ROUGE) and cloze
(fill-in-the-blank). MiniProfiles keeps that structure at toy size:

- people: 40 fictitious profiles and 20 "celebrities" (the real-world stand-in, never forgotten) with a procedurally
  rendered 32x32 face (numpy), 6 views each (view 0 clean, views 1-4 training augmentations, view 5 held out), and
  facts: name, birthplace, occupation, birth year;
- questions: 4 visual (image + question) and 3 text-only (by name) per person; paraphrased and cloze templates are
  only ever trained on the celebrities, so on fictitious people they are held out (MLLMU-Bench's Test set);
- utility: 20 "capital of" world facts, and hair / shirt / background colour questions on unseen random faces;
- model: a real `LlavaForConditionalGeneration` (tiny CLIP vision tower + tiny Llama, ~0.5M parameters) with a
  word-level `PreTrainedTokenizerFast` and a real `LlavaProcessor`, fine-tuned from scratch until it memorises the
  profiles ("vanilla" model); a retain-only retrain is the oracle;
- metrics (per split, for visual and text questions): multiple-choice accuracy by option likelihood, generation exact
  match and ROUGE-L, and a cloze score.

Forget splits are drawn after fine-tuning (the vanilla model saw every profile, as in MLLMU-Bench), so one vanilla
model serves several random splits. Settings follow the measured prototype in `miniprofiles-feasibility.md`.
Trained weights are cached with `save_pretrained` (safetensors + config.json) under
`$MMU_ATLAS_CACHE/miniprofiles/<config hash>/` (default root `~/.cache/mmu-atlas`), so a machine trains once.

`load_miniprofiles(model="llava-hf/llava-1.5-7b-hf")` (or a local path) runs the same data, fine-tuning and
evaluation on a real LLaVA checkpoint instead of the tiny model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .cache import cache_root, cached, config_hash

from ..common import seed_everything

# The file a finished cache build writes last: its presence means the folder is complete.
CACHE_MARKER = "testbed.json"


# ----------------------------------------------------------------------------------------------------------
# Vocabulary and question templates
# ----------------------------------------------------------------------------------------------------------
FIRST_NAMES = (
    "anna", "boris", "chloe", "dmitri", "elena", "farid", "greta", "hugo", "ines", "jonas",
    "kira", "lucas", "maya", "nikolai", "olga", "pablo", "quinn", "rosa", "stefan", "tara",
    "umar", "vera", "willem", "xenia", "yusuf", "zoe", "amir", "bianca", "carlos", "dana",
)  # fmt: skip
LAST_NAMES = (
    "abbott", "brandt", "castillo", "dubois", "eriksen", "fischer", "gallo", "horvat", "ivanova", "jansen",
    "kowalski", "larsen", "moreau", "novak", "okafor", "petrov", "quist", "rossi", "silva", "tanaka",
    "ueda", "varga", "weber", "xu", "yilmaz", "zeller", "alvarez", "bauer", "costa", "duarte",
)  # fmt: skip
# (country, capital): capitals are the birthplaces, and "capital of <country>" questions are the world facts, so
# world knowledge and profile facts share an answer vocabulary (forgetting a birthplace must not erase a capital).
COUNTRIES = (
    ("france", "paris"), ("japan", "tokyo"), ("italy", "rome"), ("spain", "madrid"), ("germany", "berlin"),
    ("egypt", "cairo"), ("peru", "lima"), ("kenya", "nairobi"), ("norway", "oslo"), ("greece", "athens"),
    ("poland", "warsaw"), ("cuba", "havana"), ("austria", "vienna"), ("ireland", "dublin"),
    ("portugal", "lisbon"), ("russia", "moscow"), ("sweden", "stockholm"), ("hungary", "budapest"),
    ("thailand", "bangkok"), ("canada", "ottawa"), ("turkey", "ankara"), ("vietnam", "hanoi"),
    ("finland", "helsinki"), ("denmark", "copenhagen"), ("belgium", "brussels"), ("ghana", "accra"),
)  # fmt: skip
CITIES = tuple(capital for _, capital in COUNTRIES)
JOBS = (
    "baker", "pilot", "nurse", "farmer", "painter", "lawyer", "chemist", "dentist", "architect", "journalist",
    "plumber", "teacher", "surgeon", "librarian", "carpenter", "engineer", "musician", "photographer",
    "pharmacist", "sculptor",
)  # fmt: skip
YEARS = tuple(str(year) for year in range(1950, 2000, 2))  # 25 values
HAIR_COLOURS = ("black", "brown", "blond", "red", "grey", "white")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")  # shirts and backgrounds
FACTS = ("birthplace", "job", "year")  # asked with the image and by name
ANSWER_POOLS = {"birthplace": CITIES, "job": JOBS, "year": YEARS, "capital": CITIES,
                "hair": HAIR_COLOURS, "shirt": COLOURS, "background": COLOURS}  # fmt: skip

# Question templates. "{name}" is the person's full name. Visual questions get the image. Paraphrases keep the
# attribute's content word in a new frame (a word-level model trained from scratch cannot know synonyms it never saw).
VISUAL_QUESTIONS = {
    "name": "who is the person in this picture ?",
    "birthplace": "where was the person in this picture born ?",
    "job": "what is the job of the person in this picture ?",
    "year": "in which year was the person in this picture born ?",
}
TEXT_QUESTIONS = {
    "birthplace": "where was {name} born ?",
    "job": "what is the job of {name} ?",
    "year": "in which year was {name} born ?",
}
PARAPHRASED_VISUAL_QUESTIONS = {
    "name": "what is the name of the person shown in this picture ?",
    "birthplace": "in which city was the person shown in this picture born ?",
    "job": "which job does the person shown in this picture have ?",
    "year": "what year was the person shown in this picture born in ?",
}
PARAPHRASED_TEXT_QUESTIONS = {
    "birthplace": "in which city was {name} born ?",
    "job": "which job does {name} have ?",
    "year": "what year was {name} born in ?",
}
CLOZE_VISUAL_QUESTIONS = {
    "name": "fill in the blank : the name of the person in this picture is ___ .",
    "birthplace": "fill in the blank : the person in this picture was born in the city of ___ .",
    "job": "fill in the blank : the job of the person in this picture is ___ .",
    "year": "fill in the blank : the person in this picture was born in the year ___ .",
}
CLOZE_TEXT_QUESTIONS = {
    "birthplace": "fill in the blank : {name} was born in the city of ___ .",
    "job": "fill in the blank : the job of {name} is ___ .",
    "year": "fill in the blank : {name} was born in the year ___ .",
}
UTILITY_QUESTIONS = {
    "hair": "what colour is the hair of the person in this picture ?",
    "shirt": "what colour is the shirt of the person in this picture ?",
    "background": "what colour is the background of this picture ?",
}
WORLD_QUESTION = "what is the capital of {country} ?"

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>", "<image>")
IMAGE_TOKEN = "<image>"
_WORD = re.compile(r"\w+|[^\w\s]+")  # the split of `pre_tokenizers.Whitespace`


def format_prompt(question: str, visual: bool, style: str = "plain") -> str:
    """'plain' ("<image> question", the tiny model: fewer tokens) or 'llava' (LLaVA-1.5's conversation format,
    which MLLMU-Bench uses to prompt real checkpoints)."""
    if style == "llava":
        return f"USER: {IMAGE_TOKEN}\n{question} ASSISTANT:" if visual else f"USER: {question} ASSISTANT:"
    if style == "plain":
        return f"{IMAGE_TOKEN} {question}" if visual else question
    raise ValueError(f"unknown prompt style {style!r}; use 'plain' or 'llava'")


def build_vocab() -> tuple:
    """Special tokens, then every word of every template and answer, sorted (deterministic ids)."""
    texts = [format_prompt("", True, "llava")]
    for table in (VISUAL_QUESTIONS, TEXT_QUESTIONS, PARAPHRASED_VISUAL_QUESTIONS, PARAPHRASED_TEXT_QUESTIONS,
                  CLOZE_VISUAL_QUESTIONS, CLOZE_TEXT_QUESTIONS, UTILITY_QUESTIONS):  # fmt: skip
        texts += list(table.values())
    texts += [WORLD_QUESTION] + list(FIRST_NAMES + LAST_NAMES + JOBS + YEARS + HAIR_COLOURS + COLOURS)
    texts += [word for pair in COUNTRIES for word in pair]
    words = {word for text in texts for word in _WORD.findall(text.replace("{name}", "").replace("{country}", ""))}
    return SPECIAL_TOKENS + tuple(sorted(words - set(SPECIAL_TOKENS)))


# ----------------------------------------------------------------------------------------------------------
# Configuration (scale presets) and cache
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MiniProfilesConfig:
    """Everything that determines the testbed; hashes of its parts key the caches."""

    scale: str = "ci"
    seed: int = 0  # data and vanilla-model seed (run seeds pick forget splits, they do not retrain the testbed)
    num_threads: int = 1  # fixed: CPU results are bit-reproducible only at a fixed count, and 1 thread is the
    # fastest on a shared 2-core box (2 threads were 2-10x slower when another job was running)
    # data (feasibility note: 40 fictitious + 10 celebrities, 6 views, 80/60 utility faces)
    n_people: int = 40
    n_celebrities: int = 20  # 10 in the feasibility note; 20 lift paraphrase transfer (MC) from ~0.4 to ~0.8
    n_world_facts: int = 20
    n_utility_train: int = 80
    n_utility_test: int = 60
    n_views: int = 6  # view 0 clean, views 1..n-2 training augmentations, view n-1 held out
    image_size: int = 32
    # evaluation
    mc_options: int = 8  # MLLMU-Bench asks 4 lettered options; 8 likelihood-scored options put chance at 0.125
    max_new_tokens: int = 4  # answers are at most 2 words here
    eval_batch_size: int = 256
    forget_fraction: float = 0.1  # MLLMU-Bench forget 5/10/15%
    n_splits: int = 3  # random forget splits per run (mean +- std)
    # tiny model (feasibility note: CLIP 2x64, projector to 128, Llama 2x128)
    patch_size: int = 8
    vision_hidden_size: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    vision_intermediate_size: int = 128
    text_hidden_size: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate_size: int = 256
    # training (feasibility note: AdamW 2e-3, batch 32, 50-epoch warmup+cosine, stop at EM >= 0.99). Two stages,
    # as in MLLMU-Bench: a base model learns the real-world stand-in (celebrities, world facts, colours), then the
    # vanilla model (and each oracle) is the base fine-tuned on the fictitious (retain) profiles, with a replay
    # of base data so that the small model keeps its real-world knowledge.
    base_epochs: int = 80  # upper bounds: early stopping ends training once the set is memorised
    epochs: int = 80
    replay_fraction: float = 0.25  # share of the base data mixed into each fine-tuning epoch
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_fraction: float = 0.05
    check_every: int = 5  # epochs between memorisation checks
    stop_at_em: float = 0.99
    # training a real LLaVA checkpoint instead, both stages (MLLMU-Bench vanilla model: lr 2e-5, 5 epochs; batch 4)
    pretrained_epochs: int = 5
    pretrained_batch_size: int = 4
    pretrained_learning_rate: float = 2e-5
    pretrained_max_new_tokens: int = 16

    def data_key(self) -> dict:
        keys = ("seed", "n_people", "n_celebrities", "n_world_facts", "n_utility_train", "n_utility_test",
                "n_views", "image_size", "mc_options")  # fmt: skip
        return {k: getattr(self, k) for k in keys}

    def model_key(self) -> dict:
        """Fields that change the trained vanilla model (and the data it sees)."""
        skip = {"scale", "max_new_tokens", "eval_batch_size", "forget_fraction", "n_splits", "mc_options"}
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip and not k.startswith("pretrained")}
        return {"testbed": "miniprofiles-v4", **fields}

    def eval_key(self) -> dict:
        return {"mc_options": self.mc_options, "max_new_tokens": self.max_new_tokens, "data": self.data_key()}


SCALES = {
    # ci: the feasibility defaults plus 10 celebrities
    "ci": MiniProfilesConfig(),
    # full: 2.5x the people, a wider vision tower and language model, longer training, 5 splits
    "full": MiniProfilesConfig(
        scale="full", n_people=100, n_celebrities=40, n_utility_train=160, n_utility_test=100, n_splits=5,
        vision_hidden_size=96, vision_layers=3, vision_intermediate_size=192, text_hidden_size=192,
        text_layers=3, text_intermediate_size=384, base_epochs=120, epochs=120,
    ),
}


def config_for(scale: str) -> MiniProfilesConfig:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    return SCALES[scale]


def sha256_of_checkpoint(directory: Path) -> str:
    """sha256 of the safetensors weights (of the sorted shard digests when the checkpoint is sharded)."""
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file in {directory}")
    digests = []
    for path in files:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digests.append(digest.hexdigest())
    return digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------------
# Faces: procedural 32x32 portraits
# ----------------------------------------------------------------------------------------------------------
SKIN_RGB = ((255, 224, 196), (234, 192, 134), (198, 134, 66), (141, 85, 36), (92, 56, 38))
HAIR_RGB = {"black": (25, 25, 25), "brown": (101, 67, 33), "blond": (235, 205, 110), "red": (175, 55, 20),
            "grey": (150, 150, 150), "white": (245, 245, 245)}  # fmt: skip
COLOUR_RGB = {"red": (215, 35, 35), "green": (35, 165, 65), "blue": (45, 75, 220), "yellow": (240, 220, 45),
              "purple": (140, 55, 170), "orange": (250, 140, 25), "white": (240, 240, 240),
              "black": (20, 20, 20)}  # fmt: skip
EYE_RGB = ((45, 95, 200), (35, 140, 65), (100, 60, 25), (20, 20, 20))
# name -> number of values; a face is one value per attribute
FACE_ATTRIBUTES = {"background": len(COLOURS), "skin": len(SKIN_RGB), "hair": len(HAIR_COLOURS), "hair_style": 3,
                   "eyes": len(EYE_RGB), "eye_spacing": 3, "mouth": 3, "glasses": 2, "shirt": len(COLOURS),
                   "face_shape": 3}  # fmt: skip


def random_face(rng: np.random.Generator) -> dict:
    return {name: int(rng.integers(count)) for name, count in FACE_ATTRIBUTES.items()}


def distinct_faces(count: int, rng: np.random.Generator, min_differences: int = 3) -> list:
    """Faces that pairwise differ in at least `min_differences` attributes, so identities are visually distinct."""
    faces = []
    while len(faces) < count:
        face = random_face(rng)
        if all(sum(face[k] != other[k] for k in face) >= min_differences for other in faces):
            faces.append(face)
    return faces


def render_face(face: dict, size: int = 32) -> np.ndarray:
    """A clean (H, W, 3) uint8 portrait: background, shirt, face ellipse, hair, eyes, mouth, optional glasses."""
    s = size / 32.0  # every coordinate below is on a 32x32 grid
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = COLOUR_RGB[COLOURS[face["background"]]]
    yy, xx = np.mgrid[0:size, 0:size] / s
    cx, cy = 16.0, 14.0
    rx, ry = ((8.0, 10.0), (9.5, 9.0), (7.0, 11.0))[face["face_shape"]]
    shirt = (yy >= 25) & (np.abs(xx - cx) <= 12 - 0.3 * (31 - yy))
    img[shirt] = COLOUR_RGB[COLOURS[face["shirt"]]]
    inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    img[inside] = SKIN_RGB[face["skin"]]
    top = cy - ry
    hair_height = (3.0, 6.0, 4.0)[face["hair_style"]]
    hair = (((xx - cx) / (rx + 1)) ** 2 + ((yy - cy) / (ry + 1)) ** 2 <= 1.0) & (yy <= top + hair_height)
    if face["hair_style"] == 2:  # long: hair down the sides
        hair |= (np.abs(xx - cx) >= rx - 1.5) & (np.abs(xx - cx) <= rx + 1.5) & (yy <= cy + 3) & (yy >= top)
    img[hair] = HAIR_RGB[HAIR_COLOURS[face["hair"]]]
    spacing = (2.5, 3.5, 4.5)[face["eye_spacing"]]
    eye_y = cy - 1.5
    for side in (-1, 1):
        eye = (np.abs(xx - (cx + side * spacing)) <= 1.0) & (np.abs(yy - eye_y) <= 1.0)
        img[eye] = EYE_RGB[face["eyes"]]
        if face["glasses"]:
            frame = (np.abs(xx - (cx + side * spacing)) <= 2.0) & (np.abs(yy - eye_y) <= 2.0) & ~eye
            img[frame] = (10, 10, 10)
    if face["glasses"]:
        img[(np.abs(yy - eye_y) <= 0.5) & (np.abs(xx - cx) <= spacing - 2.0)] = (10, 10, 10)
    half_mouth = (1.0, 2.0, 3.0)[face["mouth"]]
    img[(np.abs(yy - (cy + 5.0)) <= 0.6) & (np.abs(xx - cx) <= half_mouth)] = (150, 30, 40)
    return img.clip(0, 255).astype(np.uint8)


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A new 'photo' of the same face: shift by up to 2 px (edge padding), brightness 0.85-1.15, pixel noise."""
    pad = 2
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    dy, dx = rng.integers(-pad, pad + 1, size=2)
    shifted = padded[pad + dy : pad + dy + image.shape[0], pad + dx : pad + dx + image.shape[1]].astype(np.float32)
    shifted = shifted * rng.uniform(0.85, 1.15) + rng.normal(0.0, 6.0, size=shifted.shape)
    return shifted.clip(0, 255).astype(np.uint8)


def render_views(face: dict, n_views: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(n_views, H, W, 3): view 0 clean, the others augmented."""
    clean = render_face(face, size)
    return np.stack([clean] + [augment(clean, rng) for _ in range(n_views - 1)])


# ----------------------------------------------------------------------------------------------------------
# Data: people, questions, forget splits
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Person:
    pid: str  # "p07" fictitious, "c03" celebrity
    group: str  # "fictitious" | "celebrity"
    name: str
    birthplace: str
    job: str
    year: str
    face: int  # row of `MiniProfilesData.images`


@dataclass(frozen=True)
class QA:
    """One question. `view` is a view index, or -1 for "a random training view" (training items)."""

    qid: str
    pid: str  # person id, "u12" for a utility face, "world" for world facts
    group: str  # "fictitious" | "celebrity" | "world" | "utility"
    kind: str  # "qa" (trained template) | "paraphrase" | "cloze" | "world" | "utility"
    modality: str  # "visual" | "text"
    attribute: str  # "name", "birthplace", "job", "year", "capital", "hair", "shirt", "background"
    question: str
    answer: str
    face: int = -1
    view: int = -1
    options: tuple = ()  # multiple-choice options (answer included); empty for cloze questions

    @property
    def visual(self) -> bool:
        return self.modality == "visual"

    @property
    def correct_option(self) -> int:
        return self.options.index(self.answer)


@dataclass
class MiniProfilesData:
    config: MiniProfilesConfig
    people: list  # fictitious first, then celebrities
    images: np.ndarray  # (n_faces, n_views, H, W, 3) uint8
    base_items: list  # the base model's "pre-training": celebrities, world facts, colours (the real-world stand-in)
    profile_train_items: list  # the fictitious profiles' questions: what the vanilla model is fine-tuned on
    eval_items: list  # what every model is evaluated on

    @property
    def fictitious_ids(self) -> list:
        return [p.pid for p in self.people if p.group == "fictitious"]

    @property
    def train_views(self) -> tuple:
        return tuple(range(self.config.n_views - 1))

    @property
    def heldout_view(self) -> int:
        return self.config.n_views - 1

    def profile_items(self, pids: Sequence[str], modalities: Sequence[str] = ("visual", "text")) -> list:
        """The trained profile questions of some people (a forget or retain set; the oracle's fine-tuning set)."""
        wanted = set(pids)
        return [q for q in self.profile_train_items if q.pid in wanted and q.modality in modalities]


def _options(answer: str, pool: Sequence[str], count: int, key: str, seed: int) -> tuple:
    """`count` options (answer + distractors from the pool), drawn and shuffled deterministically per question."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    distractors = [x for x in pool if x != answer]
    chosen = [distractors[i] for i in rng.choice(len(distractors), min(count - 1, len(distractors)), replace=False)]
    options = [answer] + chosen
    return tuple(options[i] for i in rng.permutation(len(options)))


def build_data(cfg: MiniProfilesConfig) -> MiniProfilesData:
    """People, faces, views and every train / eval question, deterministic from `cfg.seed`."""
    rng = np.random.default_rng(cfg.seed)
    n_persons = cfg.n_people + cfg.n_celebrities
    if n_persons > len(FIRST_NAMES) * len(LAST_NAMES):
        raise ValueError("more people than distinct names")
    name_ids = rng.choice(len(FIRST_NAMES) * len(LAST_NAMES), n_persons, replace=False)
    faces = distinct_faces(n_persons, rng)
    people = []
    for i in range(n_persons):
        fictitious = i < cfg.n_people
        first, last = divmod(int(name_ids[i]), len(LAST_NAMES))
        people.append(
            Person(
                pid=f"p{i:02d}" if fictitious else f"c{i - cfg.n_people:02d}",
                group="fictitious" if fictitious else "celebrity",
                name=f"{FIRST_NAMES[first]} {LAST_NAMES[last]}",
                birthplace=CITIES[int(rng.integers(len(CITIES)))],
                job=JOBS[int(rng.integers(len(JOBS)))],
                year=YEARS[int(rng.integers(len(YEARS)))],
                face=i,
            )
        )
    utility_faces = [random_face(rng) for _ in range(cfg.n_utility_train + cfg.n_utility_test)]
    views = [render_views(face, cfg.n_views, cfg.image_size, rng) for face in faces + utility_faces]
    images = np.stack(views)
    names = [p.name for p in people]

    def item(pid, group, kind, modality, attribute, question, answer, face=-1, view=-1, with_options=True):
        qid = f"{pid}/{kind}/{modality}/{attribute}"
        pool = names if attribute == "name" else ANSWER_POOLS[attribute]
        options = _options(answer, pool, cfg.mc_options, qid, cfg.seed) if with_options else ()
        return QA(qid, pid, group, kind, modality, attribute, question, answer, face, view, options)

    def person_items(p: Person, kind: str, visual_table: dict, text_table: dict, view: int) -> list:
        facts = {"name": p.name, "birthplace": p.birthplace, "job": p.job, "year": p.year}
        out = [item(p.pid, p.group, kind, "visual", a, q, facts[a], p.face, view, kind != "cloze")
               for a, q in visual_table.items()]  # fmt: skip
        out += [item(p.pid, p.group, kind, "text", a, q.format(name=p.name), facts[a], with_options=kind != "cloze")
                for a, q in text_table.items()]  # fmt: skip
        return out

    base, profiles, evaluation = [], [], []
    heldout = cfg.n_views - 1
    for p in people:
        (base if p.group == "celebrity" else profiles).extend(
            person_items(p, "qa", VISUAL_QUESTIONS, TEXT_QUESTIONS, view=-1)
        )
        evaluation += person_items(p, "qa", VISUAL_QUESTIONS, TEXT_QUESTIONS, view=0)
        evaluation += person_items(p, "cloze", CLOZE_VISUAL_QUESTIONS, CLOZE_TEXT_QUESTIONS, view=0)
        if p.group == "celebrity":
            # the held-out templates are learnt on celebrities only (a format, not a fact about fictitious people)
            base += person_items(p, "paraphrase", PARAPHRASED_VISUAL_QUESTIONS, PARAPHRASED_TEXT_QUESTIONS, -1)
            base += person_items(p, "cloze", CLOZE_VISUAL_QUESTIONS, CLOZE_TEXT_QUESTIONS, view=-1)
        else:  # MLLMU-Bench's Test set: new images and paraphrased questions about the same facts
            evaluation += person_items(p, "paraphrase", PARAPHRASED_VISUAL_QUESTIONS, PARAPHRASED_TEXT_QUESTIONS,
                                       view=heldout)  # fmt: skip
    world_rows = rng.choice(len(COUNTRIES), cfg.n_world_facts, replace=False)
    for row in sorted(int(r) for r in world_rows):
        country, capital = COUNTRIES[row]
        question = WORLD_QUESTION.format(country=country)
        world = item(f"w{row:02d}", "world", "world", "text", "capital", question, capital)
        base.append(world)
        evaluation.append(world)
    for j, face in enumerate(utility_faces):
        answers = {"hair": HAIR_COLOURS[face["hair"]], "shirt": COLOURS[face["shirt"]],
                   "background": COLOURS[face["background"]]}  # fmt: skip
        trained = j < cfg.n_utility_train
        for attribute, question in UTILITY_QUESTIONS.items():
            qa = item(f"u{j:03d}", "utility", "utility", "visual", attribute, question, answers[attribute],
                      face=n_persons + j, view=-1 if trained else 0)  # fmt: skip
            (base if trained else evaluation).append(qa)
    return MiniProfilesData(cfg, people, images, base, profiles, evaluation)


def forget_splits(data: MiniProfilesData, seed: int, n_splits: Optional[int] = None,
                  fraction: Optional[float] = None) -> list:  # fmt: skip
    """`n_splits` random forget sets of fictitious person ids (sorted), deterministic from the run seed."""
    cfg = data.config
    n_splits = cfg.n_splits if n_splits is None else n_splits
    fraction = cfg.forget_fraction if fraction is None else fraction
    ids = data.fictitious_ids
    size = max(1, round(fraction * len(ids)))
    splits = []
    for k in range(n_splits):
        rng = np.random.default_rng([int(seed), k])
        splits.append(sorted(ids[i] for i in rng.choice(len(ids), size, replace=False)))
    return splits


# ----------------------------------------------------------------------------------------------------------
# Tokenizer, processor and the tiny LLaVA
# ----------------------------------------------------------------------------------------------------------
def build_tokenizer(model_max_length: int = 64):
    """A word-level `PreTrainedTokenizerFast` built offline; it adds <bos> (answers get <eos> from the encoder)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(build_vocab())}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        # gotcha 4 of the feasibility note: LlavaProcessor reads tokenizer.image_token
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        model_max_length=model_max_length,
    )


def build_processor(cfg: MiniProfilesConfig):
    """A real LlavaProcessor. Gotchas 1 and 5: one extra image token for CLIP's CLS, explicit 32 px sizes."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": cfg.image_size},
        crop_size={"height": cfg.image_size, "width": cfg.image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        patch_size=cfg.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


def build_model_config(cfg: MiniProfilesConfig, tokenizer):
    """Tiny CLIP vision tower + tiny Llama in a LlavaConfig (gotchas 2 and 7 of the feasibility note)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_intermediate_size,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.vision_hidden_size,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden_size,
        intermediate_size=cfg.text_intermediate_size,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_heads,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(cfg.image_size // cfg.patch_size) ** 2,
        vision_feature_layer=-1,  # -2 (the LLaVA-1.5 default) leaves the last CLIP layer without gradient
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


def build_tiny_llava(cfg: MiniProfilesConfig, tokenizer, seed: int):
    """A randomly initialised tiny LlavaForConditionalGeneration (seeded) with greedy-decoding defaults."""
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(build_model_config(cfg, tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def load_checkpoint(path, device: torch.device, dtype: Optional[torch.dtype] = None):
    """LlavaForConditionalGeneration from a directory or hub id, safetensors weights only."""
    from transformers import LlavaForConditionalGeneration

    kwargs = {"use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = LlavaForConditionalGeneration.from_pretrained(str(path), **kwargs)
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------------------
# Encoding and batching (works for the tiny processor and for a real LLaVA processor alike)
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Encoded:
    """Token ids of one question: prompt (image tokens expanded) and answer (+ eos); options for MC scoring."""

    qa: QA
    prompt_ids: tuple
    answer_ids: tuple  # answer tokens + eos: the training target
    option_ids: tuple = ()  # per option: its tokens (no eos), scored by likelihood


class Encoder:
    """Turns QA items into padded model inputs. Labels are -100 except on answer tokens (MLLMU-Bench `ans_only`)."""

    def __init__(self, processor, images: np.ndarray, device: torch.device, prompt_style: str = "plain"):
        self.processor = processor
        self.prompt_style = prompt_style
        self.tokenizer = processor.tokenizer
        self.images = images
        self.device = device
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.eos_id = self.tokenizer.eos_token_id
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        # How many placeholder tokens the processor expands one <image> into (16 here, 576 for LLaVA-1.5).
        probe = processor(text=IMAGE_TOKEN, images=images[0, 0], return_tensors="pt")
        self.image_tokens = int((probe["input_ids"][0] == self.image_token_id).sum())
        self._pixels = {}  # (face, view) -> processed tensor; kept only when small (a real LLaVA resizes to 336 px)
        self._cache_pixels = probe["pixel_values"][0].numel() <= 3 * 64 * 64

    def _ids(self, texts: Sequence[str]) -> list:
        return self.tokenizer(list(texts))["input_ids"]

    def _expand(self, ids: Sequence[int]) -> tuple:
        out = []
        for token in ids:
            out.extend([token] * self.image_tokens if token == self.image_token_id else [token])
        return tuple(out)

    def _answer_ids(self, prompt_ids: Sequence[int], full_ids: Sequence[int], answer: str) -> tuple:
        if list(full_ids[: len(prompt_ids)]) == list(prompt_ids):
            return tuple(full_ids[len(prompt_ids) :])
        return tuple(self.tokenizer(" " + answer, add_special_tokens=False)["input_ids"])  # boundary merged

    def encode(self, items: Sequence[QA]) -> list:
        prompts = [format_prompt(q.question, q.visual, self.prompt_style) for q in items]
        prompt_ids = self._ids(prompts)
        full_ids = self._ids([p + " " + q.answer for p, q in zip(prompts, items)])
        option_texts = [p + " " + o for p, q in zip(prompts, items) for o in q.options]
        option_full = iter(self._ids(option_texts)) if option_texts else iter(())
        encoded = []
        for q, p_ids, f_ids in zip(items, prompt_ids, full_ids):
            answer = self._answer_ids(p_ids, f_ids, q.answer) + (self.eos_id,)
            options = tuple(self._answer_ids(p_ids, next(option_full), o) for o in q.options)
            encoded.append(Encoded(q, self._expand(p_ids), answer, options))
        return encoded

    def pixel_values(self, face: int, view: int) -> torch.Tensor:
        key = (face, view)
        if key in self._pixels:
            return self._pixels[key]
        pixels = self.processor.image_processor(images=self.images[face, view], return_tensors="pt")["pixel_values"][0]
        if self._cache_pixels:
            self._pixels[key] = pixels
        return pixels

    def _views(self, rows: Sequence[Encoded], train_views: Sequence[int], generator) -> list:
        """The view of each visual row: its own, or a random training view (drawn from `generator`)."""
        views = []
        for row in rows:
            if row.qa.view >= 0:
                views.append(row.qa.view)
            else:
                pick = int(torch.randint(len(train_views), (1,), generator=generator)) if generator is not None else 0
                views.append(train_views[pick])
        return views

    def batch(self, rows: Sequence[Encoded], targets: Optional[Sequence[tuple]] = None,
              train_views: Sequence[int] = (0,), generator: Optional[torch.Generator] = None,
              left_pad: bool = False) -> dict:  # fmt: skip
        """Right-padded prompt + target (default: the answer) with labels on the target tokens.

        `targets` replaces the answers (MC options). Rows without an image carry no pixel values: `pixel_values`
        holds the images of the visual rows in row order, which is what LLaVA's masked scatter expects (gotcha 3).
        With `left_pad=True` and empty targets it builds generation prompts.
        """
        targets = [row.answer_ids for row in rows] if targets is None else targets
        sequences = [tuple(row.prompt_ids) + tuple(target) for row, target in zip(rows, targets)]
        length = max(len(s) for s in sequences)
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        for i, (seq, target) in enumerate(zip(sequences, targets)):
            start = length - len(seq) if left_pad else 0
            input_ids[i, start : start + len(seq)] = torch.tensor(seq)
            attention[i, start : start + len(seq)] = 1
            if len(target):
                labels[i, start + len(seq) - len(target) : start + len(seq)] = torch.tensor(target)
        batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
        visual = [row for row in rows if row.qa.visual]
        if visual:
            views = self._views(visual, train_views, generator)
            batch["pixel_values"] = torch.stack([self.pixel_values(r.qa.face, v) for r, v in zip(visual, views)])
        return {k: v.to(self.device) for k, v in batch.items()}


def model_inputs(batch: dict) -> dict:
    """The forward() keyword arguments of a batch (pixel_values only when present: gotcha 3)."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values") if k in batch}


def shifted_logits(model, batch: dict) -> torch.Tensor:
    """(B, T-1, V) float logits, position t predicting token t+1."""
    return model(**model_inputs(batch)).logits[:, :-1].float()


def label_logprobs(logits: torch.Tensor, batch: dict) -> tuple:
    """Log-probabilities of the label tokens under shifted logits, (B, T-1) (zero off the labels), and the mask."""
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logprobs * mask, mask


def answer_token_logprobs(model, batch: dict) -> tuple:
    """Log-probabilities of the answer (label) tokens and their mask: the primitive of every loss and score.

    Computed from the logits rather than the built-in `labels=` loss, which is a token mean (gotcha 6).
    """
    return label_logprobs(shifted_logits(model, batch), batch)


# ----------------------------------------------------------------------------------------------------------
# Metrics (MLLMU-Bench: classification accuracy, generation ROUGE, cloze; exact match added)
# ----------------------------------------------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure on normalized words (longest common subsequence); MLLMU-Bench reports rougeL fmeasure.

    Unlike `rouge_score` it does not stem (the testbed's answers have no inflections).
    """
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    lcs = _lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def cloze_hit(prediction: str, reference: str) -> float:
    """MLLMU-Bench's cloze score: the ground truth appears (case-insensitively) in the response."""
    return float(normalize_answer(reference) in normalize_answer(prediction))


def mc_accuracy(option_scores: Sequence[Sequence[float]], correct: Sequence[int]) -> float:
    """Fraction of questions whose highest-likelihood option is the right one (ties go to the first option)."""
    if len(correct) == 0:
        return float("nan")
    return float(np.mean([int(np.argmax(scores)) == c for scores, c in zip(option_scores, correct)]))


# ----------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------
SPLITS = ("forget", "forget_paraphrase", "retain", "retain_paraphrase", "real_world", "visual_utility")
RECORD_KEYS = {"mc_acc": "mc", "gen_em": "em", "gen_rougeL": "rougeL", "cloze": "cloze"}  # metric -> record key


@torch.no_grad()
def score_options(model, encoder: Encoder, rows: Sequence[Encoded], batch_size: int) -> list:
    """Sum of option-token log-probabilities log p(option | prompt), per row and option (lm-eval style).

    Options that share all but their last token share one forward pass (chain rule): the pass scores the shared
    prefix with teacher forcing and reads every option's last token off the final position. Single-token options
    (cities, jobs, years, colours) thus cost one pass per question instead of one per option.
    """
    groups = {}  # (row index, shared prefix) -> [(option index, last token)]
    for i, row in enumerate(rows):
        for j, ids in enumerate(row.option_ids):
            groups.setdefault((i, tuple(ids[:-1])), []).append((j, ids[-1]))
    # sorted by length, so that a batch pads little (visual rows are ~2x longer than text-only rows)
    keys = sorted(groups, key=lambda key: len(rows[key[0]].prompt_ids) + len(key[1]))
    scores = [[0.0] * len(row.option_ids) for row in rows]
    for start in range(0, len(keys), batch_size):
        chunk = keys[start : start + batch_size]
        batch = encoder.batch([rows[i] for i, _ in chunk], targets=[prefix for _, prefix in chunk])
        logits = model(**model_inputs(batch)).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        prefix_scores = (logprobs[:, :-1].gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask).sum(-1)
        last = batch["attention_mask"].sum(-1) - 1  # right padding: the last real position
        final = logprobs[torch.arange(len(chunk)), last]  # next-token distribution after prompt + prefix
        for b, key in enumerate(chunk):
            for j, token in groups[key]:
                scores[key[0]][j] = float(prefix_scores[b] + final[b, token])
    return scores


@torch.no_grad()
def generate_answers(model, encoder: Encoder, rows: Sequence[Encoded], batch_size: int, max_new_tokens: int) -> list:
    """Greedy answers via `model.generate` on left-padded prompts (visual and text rows batched apart)."""
    answers = [""] * len(rows)
    for modality in ("visual", "text"):
        index = [i for i, row in enumerate(rows) if row.qa.modality == modality]
        for start in range(0, len(index), batch_size):
            chunk = index[start : start + batch_size]
            batch = encoder.batch([rows[i] for i in chunk], targets=[()] * len(chunk), left_pad=True)
            out = model.generate(
                **model_inputs(batch),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=encoder.pad_id,
                eos_token_id=encoder.eos_id,
            )
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            for i, tokens in zip(chunk, new_tokens.tolist()):
                if encoder.eos_id in tokens:
                    tokens = tokens[: tokens.index(encoder.eos_id)]
                answers[i] = encoder.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    return answers


@torch.no_grad()
def evaluate_items(model, encoder: Encoder, rows: Sequence[Encoded], batch_size: int, max_new_tokens: int,
                   generate: bool = True) -> dict:  # fmt: skip
    """Per-question records {qid: {mc, em, rougeL | cloze, answer}} for encoded eval questions."""
    was_training = model.training
    model.eval()
    records = {row.qa.qid: {} for row in rows}
    mc_rows = [row for row in rows if row.option_ids]
    for row, scores in zip(mc_rows, score_options(model, encoder, mc_rows, batch_size)):
        records[row.qa.qid]["mc"] = float(int(np.argmax(scores)) == row.qa.correct_option)
    if generate:
        for row, answer in zip(rows, generate_answers(model, encoder, rows, batch_size, max_new_tokens)):
            record = records[row.qa.qid]
            record["answer"] = answer
            if row.qa.kind == "cloze":
                record["cloze"] = cloze_hit(answer, row.qa.answer)
            else:
                record["em"] = exact_match(answer, row.qa.answer)
                record["rougeL"] = rouge_l(answer, row.qa.answer)
    model.train(was_training)
    return records


def split_questions(data: MiniProfilesData, forget_ids: Sequence[str]) -> dict:
    """split -> eval QA items. Paraphrase splits are MLLMU-Bench's Test set (and its retain counterpart)."""
    forget = set(forget_ids)
    out = {name: [] for name in SPLITS}
    for q in data.eval_items:
        if q.group == "fictitious":
            side = "forget" if q.pid in forget else "retain"
            out[side + ("_paraphrase" if q.kind == "paraphrase" else "")].append(q)
        elif q.group in ("celebrity", "world"):
            out["real_world"].append(q)
        else:
            out["visual_utility"].append(q)
    return out


def summarise(records: dict, data: MiniProfilesData, forget_ids: Sequence[str]) -> dict:
    """split -> {"visual"|"text"|"all": {metric: value}}; NaN where a split has no such question."""
    table = {}
    for split, questions in split_questions(data, forget_ids).items():
        table[split] = {}
        for modality in ("visual", "text", "all"):
            chosen = [q for q in questions if modality in ("all", q.modality)]
            row = {}
            for metric, key in RECORD_KEYS.items():  # cloze records carry only "cloze", the others no "cloze"
                values = [records[q.qid][key] for q in chosen if key in records.get(q.qid, {})]
                row[metric] = float(np.mean(values)) if values else float("nan")
            table[split][modality] = row
    return table


def headline(table: dict) -> dict:
    """The pooled headline figures: MC accuracy averaged over the visual and text questions of each split."""

    def pooled(split):
        values = [table[split][m]["mc_acc"] for m in ("visual", "text") if not math.isnan(table[split][m]["mc_acc"])]
        return float(np.mean(values)) if values else float("nan")

    return {
        "forget_acc": pooled("forget"),
        "forget_paraphrase_acc": pooled("forget_paraphrase"),
        "retain_acc": pooled("retain"),
        "real_world_acc": pooled("real_world"),
        "utility_acc": pooled("visual_utility"),
    }


# ----------------------------------------------------------------------------------------------------------
# Fine-tuning (the vanilla model and the retain-only oracle)
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FinetuneSettings:
    base_epochs: int
    epochs: int
    batch_size: int
    learning_rate: float
    warmup_fraction: float
    check_every: int
    stop_at_em: float
    seed: int


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


@torch.no_grad()
def teacher_forced_em(model, encoder: Encoder, rows: Sequence[Encoded], batch_size: int = 256) -> float:
    """Share of rows whose every answer token (eos included) is the argmax: greedy-decoding EM without decoding."""
    was_training = model.training
    model.eval()
    hits = []
    for start in range(0, len(rows), batch_size):
        batch = encoder.batch(rows[start : start + batch_size])
        logits = model(**model_inputs(batch)).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        correct = (logits.argmax(-1) == labels) | ~mask
        hits += correct.all(-1).tolist()
    model.train(was_training)
    return float(np.mean(hits))


def finetune(
    model,
    encoder: Encoder,
    rows: Sequence[Encoded],
    check_rows: Sequence[Encoded],
    settings: FinetuneSettings,
    train_views: Sequence[int],
    log: Callable[[str], None] = print,
    replay_rows: Sequence[Encoded] = (),
    replay_fraction: float = 0.0,
) -> dict:
    """AdamW + warmup/cosine on the answer tokens; stops early once `check_rows` are memorised (EM >= stop_at_em).

    Each epoch also replays a fresh random `replay_fraction` of `replay_rows` (earlier knowledge to keep).
    """
    generator = torch.Generator().manual_seed(settings.seed)
    model.requires_grad_(True)
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    n_replay = round(replay_fraction * len(replay_rows))
    steps_per_epoch = math.ceil((len(rows) + n_replay) / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, int(settings.warmup_fraction * total), total)
    )
    model.train()
    start_time, epoch, em, loss = time.perf_counter(), 0, 0.0, torch.tensor(float("nan"))
    for epoch in range(1, settings.epochs + 1):
        replay = [replay_rows[i] for i in torch.randperm(len(replay_rows), generator=generator)[:n_replay].tolist()]
        epoch_rows = list(rows) + replay
        order = torch.randperm(len(epoch_rows), generator=generator).tolist()
        for start in range(0, len(epoch_rows), settings.batch_size):
            chunk = [epoch_rows[i] for i in order[start : start + settings.batch_size]]
            batch = encoder.batch(chunk, train_views=train_views, generator=generator)
            logprobs, mask = answer_token_logprobs(model, batch)
            loss = -logprobs.sum() / mask.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
        if epoch % settings.check_every == 0 or epoch == settings.epochs:
            em = teacher_forced_em(model, encoder, check_rows)
            log(f"[miniprofiles]   epoch {epoch:3d}  loss {loss.item():.4f}  memorised EM {em:.3f}")
            if em >= settings.stop_at_em:
                break
    model.eval().requires_grad_(False)
    return {"epochs": epoch, "train_time_s": time.perf_counter() - start_time, "final_loss": float(loss.item()),
            "memorised_em": em}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# The testbed object
# ----------------------------------------------------------------------------------------------------------
@dataclass
class UnlearningTask:
    """What an MLLM unlearning method receives: encoded forget / retain training questions and a batcher.

    `forget` holds every trained profile question of the forget people (both modalities; methods pick the
    modalities they unlearn), `retain` those of the retain people. `batch(rows, generator)` collates rows into
    model inputs on the right device, with a random training view for visual rows.
    """

    forget: list
    retain: list
    encoder: Encoder
    train_views: tuple
    seed: int

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def batch(self, rows: Sequence[Encoded], generator: Optional[torch.Generator] = None) -> dict:
        return self.encoder.batch(rows, train_views=self.train_views, generator=generator)


class ProfileTrainer:
    """Trains (and caches) the base model, then fine-tunes it on profiles: the vanilla model and the oracles.

    Stage 0, the base model: the starting model (seeded random tiny LLaVA, or a pretrained checkpoint) trained on
    `data.base_items`, the stand-in for what a pretrained LLaVA already knows. Stage 1: the base fine-tuned on
    profile questions plus a replay of base data, as MLLMU-Bench fine-tunes LLaVA on its fictitious profiles.
    """

    def __init__(self, cfg, data, encoder, source, settings, base_dir, log):
        self.config, self.data, self.encoder = cfg, data, encoder
        self.source, self.settings, self.base_dir, self.log = source, settings, Path(base_dir), log

    def initial_model(self):
        if self.source == "tiny":
            return build_tiny_llava(self.config, self.encoder.tokenizer, self.config.seed).to(self.encoder.device)
        return load_checkpoint(self.source, self.encoder.device, dtype=_pretrained_dtype(self.encoder.device))

    def _rows(self, items: Sequence[QA]) -> tuple:
        """Encoded rows and the memorisation check (profile and world questions, clean view)."""
        rows = self.encoder.encode(items)
        check = [r for r in rows if r.qa.kind in ("qa", "world")]
        check = [dataclasses.replace(r, qa=dataclasses.replace(r.qa, view=0)) if r.qa.visual else r for r in check]
        return rows, check

    def base_model(self):
        """Stage 0, trained once per machine and cached."""
        if not (self.base_dir / "testbed.json").exists():
            self.log(f"[miniprofiles] training the base model ({self.config.scale} scale, {self.source}); once")
        directory = cached(self.base_dir, self._builder(self._train_base, {"stage": "base"}), CACHE_MARKER)
        return load_checkpoint(directory, self.encoder.device, _dtype_for(self.source, self.encoder.device))

    def _train_base(self):
        seed_everything(self.config.seed)
        model = self.initial_model()
        rows, check = self._rows(self.data.base_items)
        base_settings = dataclasses.replace(self.settings, epochs=self.settings.base_epochs)
        return model, finetune(model, self.encoder, rows, check, base_settings, self.data.train_views, self.log)

    def train(self, items: Sequence[QA]):
        """Stage 1: the base model fine-tuned on profile questions (with replay); returns (model, info)."""
        model = self.base_model()
        seed_everything(self.config.seed)
        rows, check = self._rows(items)
        replay = self.encoder.encode(self.data.base_items)
        info = finetune(model, self.encoder, rows, check, self.settings, self.data.train_views, self.log,
                        replay_rows=replay, replay_fraction=self.config.replay_fraction)  # fmt: skip
        return model, info

    def build(self, items: Sequence[QA], info: dict) -> Callable[[Path], None]:
        """A cache builder for a stage-1 model (vanilla or oracle) trained on `items`."""
        return self._builder(lambda: self.train(items), info)

    def _builder(self, train: Callable, info: dict) -> Callable[[Path], None]:
        def build(directory: Path) -> None:
            model, trained = train()
            model.save_pretrained(str(directory), safe_serialization=True)
            self.encoder.processor.save_pretrained(str(directory))
            meta = {**info, **trained, "testbed_config": dataclasses.asdict(self.config), "source": self.source}
            (directory / "testbed.json").write_text(json.dumps(meta, indent=2, default=list))

        return build


def _dtype_for(source: str, device: torch.device):
    return None if source == "tiny" else _pretrained_dtype(device)


def _pretrained_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


class MiniProfiles:
    """Data, processor, vanilla model and evaluation of the testbed; oracles are trained (and cached) on demand."""

    def __init__(self, cfg, data, encoder, trainer, model_dir, max_new_tokens, eval_batch_size, log):
        self.config = cfg
        self.data = data
        self.encoder = encoder
        self.processor = encoder.processor
        self.device = encoder.device
        self.trainer = trainer
        self.source = trainer.source  # "tiny" or the checkpoint path / hub id
        self.max_new_tokens = max_new_tokens
        self.eval_batch_size = eval_batch_size
        self.log = log
        self.model_dir = Path(model_dir)
        self.model_info = json.loads((self.model_dir / "testbed.json").read_text())
        self.model = load_checkpoint(self.model_dir, self.device, self._dtype())
        self.model.requires_grad_(False)
        self.checkpoint_sha256 = sha256_of_checkpoint(self.model_dir)
        self.eval_rows = encoder.encode(data.eval_items)

    def _dtype(self):
        return _dtype_for(self.source, self.device)

    # --- data -------------------------------------------------------------------------------------------
    def forget_splits(self, seed: int, n_splits: Optional[int] = None) -> list:
        return forget_splits(self.data, seed, n_splits)

    def unlearning_task(self, forget_ids: Sequence[str], seed: int) -> UnlearningTask:
        retain_ids = [pid for pid in self.data.fictitious_ids if pid not in set(forget_ids)]
        return UnlearningTask(
            forget=self.encoder.encode(self.data.profile_items(forget_ids)),
            retain=self.encoder.encode(self.data.profile_items(retain_ids)),
            encoder=self.encoder,
            train_views=self.data.train_views,
            seed=seed,
        )

    # --- evaluation ---------------------------------------------------------------------------------------
    def evaluate_records(self, model) -> dict:
        return evaluate_items(model, self.encoder, self.eval_rows, self.eval_batch_size, self.max_new_tokens)

    def summarise(self, records: dict, forget_ids: Sequence[str]) -> dict:
        """{"table": split x modality x metric, "headline": pooled accuracies} for one forget split."""
        table = summarise(records, self.data, forget_ids)
        return {"table": table, "headline": headline(table)}

    def evaluate(self, model, forget_ids: Sequence[str]) -> dict:
        return self.summarise(self.evaluate_records(model), forget_ids)

    def quick_eval(self, model, forget_ids: Sequence[str], retain_sample: int = 12) -> dict:
        """MC accuracy on the forget and (a fixed sample of) retain profile questions: the trade-off curve."""
        forget = set(forget_ids)
        retain = set([pid for pid in self.data.fictitious_ids if pid not in forget][:retain_sample])
        rows = [r for r in self.eval_rows if r.qa.kind == "qa" and r.qa.pid in forget | retain]
        records = evaluate_items(model, self.encoder, rows, self.eval_batch_size, self.max_new_tokens, generate=False)
        forget_mc = [records[r.qa.qid]["mc"] for r in rows if r.qa.pid in forget]
        retain_mc = [records[r.qa.qid]["mc"] for r in rows if r.qa.pid in retain]
        return {"forget_acc": float(np.mean(forget_mc)), "retain_acc": float(np.mean(retain_mc))}

    def cached_records(self, model, directory: Path) -> dict:
        """Evaluation records of a cached (never modified) model, stored next to its weights."""
        path = Path(directory) / f"eval-{config_hash(self.eval_key())}.json"
        if path.exists():
            return json.loads(path.read_text())
        records = self.evaluate_records(model)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(records))
        os.replace(tmp, path)
        return records

    def eval_key(self) -> dict:
        return {**self.config.eval_key(), "max_new_tokens": self.max_new_tokens, "source": self.source}

    # --- oracle ---------------------------------------------------------------------------------------------
    def oracle_dir(self, forget_ids: Sequence[str]) -> Path:
        return self.model_dir.parent / (self.model_dir.name + "-oracle-" + config_hash(sorted(forget_ids)))

    def oracle(self, forget_ids: Sequence[str]):
        """The retain-only retrain (same recipe and initialisation, forget people removed), cached; (model, dir)."""
        directory = self.oracle_dir(forget_ids)
        if not (directory / "testbed.json").exists():
            self.log(f"[miniprofiles] training the retain-only oracle without {', '.join(forget_ids)}")
        retain_ids = [pid for pid in self.data.fictitious_ids if pid not in set(forget_ids)]
        items = self.data.profile_items(retain_ids)
        directory = cached(directory, self.trainer.build(items, {"forget_ids": list(forget_ids)}), CACHE_MARKER)
        model = load_checkpoint(directory, self.device, self._dtype())
        return model.requires_grad_(False), directory


def load_miniprofiles(scale: str = "ci", device="cpu", model: Optional[str] = None,
                      log: Callable[[str], None] = print, **overrides) -> MiniProfiles:  # fmt: skip
    """Load (fine-tuning on first use) the MiniProfiles testbed at a scale ('ci' or 'full').

    `model=None` builds the tiny LLaVA; a LLaVA checkpoint directory or hub id is loaded with
    `LlavaForConditionalGeneration.from_pretrained` + `AutoProcessor` and fine-tuned on the profiles (MLLMU-Bench's
    vanilla-model recipe), cached the same way. `overrides` replace config fields (tests use tiny sizes).
    """
    cfg = dataclasses.replace(config_for(scale), **overrides) if overrides else config_for(scale)
    torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    device = torch.device(device)
    data = build_data(cfg)
    if model is None:
        processor, source = build_processor(cfg), "tiny"
        settings = FinetuneSettings(cfg.base_epochs, cfg.epochs, cfg.batch_size, cfg.learning_rate,
                                    cfg.warmup_fraction, cfg.check_every, cfg.stop_at_em, cfg.seed)  # fmt: skip
        max_new_tokens, eval_batch_size = cfg.max_new_tokens, cfg.eval_batch_size
        key = {**cfg.model_key(), "train_device": device.type}
    else:
        from transformers import AutoProcessor

        processor, source = AutoProcessor.from_pretrained(str(model)), str(model)
        settings = FinetuneSettings(cfg.pretrained_epochs, cfg.pretrained_epochs, cfg.pretrained_batch_size,
                                    cfg.pretrained_learning_rate, 0.0, cfg.pretrained_epochs, cfg.stop_at_em,
                                    cfg.seed)  # fmt: skip
        max_new_tokens, eval_batch_size = cfg.pretrained_max_new_tokens, 8
        key = {"source": source, "data": cfg.data_key(), "settings": dataclasses.asdict(settings),
               "train_device": device.type}  # fmt: skip
    encoder = Encoder(processor, data.images, device, prompt_style="plain" if model is None else "llava")
    model_dir = cache_root() / "miniprofiles" / config_hash(key)
    trainer = ProfileTrainer(cfg, data, encoder, source, settings, model_dir.parent / (model_dir.name + "-base"), log)
    if not (model_dir / "testbed.json").exists():
        log(f"[miniprofiles] fine-tuning the vanilla model ({cfg.scale} scale, {source}); once per machine")
    items = data.profile_items(data.fictitious_ids)
    model_dir = cached(model_dir, trainer.build(items, {"cache_key": key}), CACHE_MARKER)
    return MiniProfiles(cfg, data, encoder, trainer, model_dir, max_new_tokens, eval_batch_size, log)
