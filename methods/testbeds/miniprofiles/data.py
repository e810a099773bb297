"""MiniProfiles' data: fictitious people with procedurally rendered faces, their questions, and the forget splits.

People: 40 fictitious profiles and 20 "celebrities" (the real-world stand-in, never forgotten) with a 32x32 face
(numpy), 6 views each (view 0 clean, views 1-4 training augmentations, view 5 held out), and facts: name,
birthplace, occupation, birth year. Questions: 4 visual (image + question) and 3 text-only (by name) per person;
paraphrased and cloze templates are only ever trained on the celebrities, so on fictitious people they are held out
(MLLMU-Bench's Test set). Utility: "capital of" world facts, and colour questions on unseen random faces.

Two additions serve cards beyond MLLMU-Bench's baselines without changing what the vanilla model is trained on or how
it was scored before:
- harmless questions: the colour questions asked on every fictitious person's face (`harmless_items`, held-out view;
  never trained). Asked on the forget people's faces they measure over-forgetting, SafeEraser's concern: whether the
  model still answers an innocuous question about an image it was told to forget.
- refusal answers (`REFUSALS`), what refusal-training cards (PO / IDK) train the forget questions towards. Their words
  extend the tokenizer after the trained vocabulary (see `build_vocab`), so every existing token id is unchanged.
Everything is deterministic from the config's seed.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .config import MiniProfilesConfig


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


# Harmless questions about a profile image: the colour questions, whose answers depend on the picture and not on the
# person's identity (SafeEraser's "unharmful" questions about a forget image).
HARMLESS_QUESTIONS = UTILITY_QUESTIONS


# Refusal answers for the refusal-training cards, in the spirit of the "I don't know" lists that TOFU, CLEAR and
# UMU-Bench sample from (written for this word-level tokenizer: no apostrophes).
REFUSALS = (
    "i do not know .",
    "i am not sure .",
    "i have no idea .",
    "i cannot answer that .",
    "i do not have that information .",
    "i am not certain about that .",
    "that is beyond my knowledge .",
    "i have not learned about that .",
)


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
    """Special tokens, then every word of every template and answer, sorted (deterministic ids): the vocabulary the
    tiny model is built and trained with."""
    texts = [format_prompt("", True, "llava")]
    for table in (VISUAL_QUESTIONS, TEXT_QUESTIONS, PARAPHRASED_VISUAL_QUESTIONS, PARAPHRASED_TEXT_QUESTIONS,
                  CLOZE_VISUAL_QUESTIONS, CLOZE_TEXT_QUESTIONS, UTILITY_QUESTIONS):  # fmt: skip
        texts += list(table.values())
    texts += [WORLD_QUESTION] + list(FIRST_NAMES + LAST_NAMES + JOBS + YEARS + HAIR_COLOURS + COLOURS)
    texts += [word for pair in COUNTRIES for word in pair]
    words = {word for text in texts for word in _WORD.findall(text.replace("{name}", "").replace("{country}", ""))}
    return SPECIAL_TOKENS + tuple(sorted(words - set(SPECIAL_TOKENS)))


def refusal_vocab() -> tuple:
    """The words of `REFUSALS` that `build_vocab` lacks, sorted: the tokenizer appends them after the trained
    vocabulary, so that existing ids (and the vanilla model, built over `build_vocab` only) stay as they are. A card
    that trains towards refusals gives the model embedding rows for them (`resize_token_embeddings`, as UMU-Bench's
    PO script does for LLaVA)."""
    known = set(build_vocab())
    return tuple(sorted({word for text in REFUSALS for word in _WORD.findall(text)} - known))


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
    kind: str  # "qa" (trained template) | "paraphrase" | "cloze" | "world" | "utility" | "harmless"
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
    # colour questions on each fictitious person's held-out view: evaluated apart from `eval_items` (never trained)
    harmless_items: list = dataclasses.field(default_factory=list)

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

    def harmless_training_items(self, pids: Sequence[str]) -> list:
        """The harmless questions about some people's images on a random training view (what a card may train on,
        e.g. SafeEraser's prompt-decouple set); evaluation asks the same questions on the held-out view."""
        wanted = set(pids)
        return [dataclasses.replace(q, view=-1) for q in self.harmless_items if q.pid in wanted]


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
    # Harmless questions, built last and without the generator, so that nothing above changes.
    harmless = []
    for p, face in zip(people, faces):
        if p.group != "fictitious":
            continue
        answers = {"hair": HAIR_COLOURS[face["hair"]], "shirt": COLOURS[face["shirt"]],
                   "background": COLOURS[face["background"]]}  # fmt: skip
        harmless += [item(p.pid, p.group, "harmless", "visual", attribute, question, answers[attribute], p.face,
                          heldout) for attribute, question in HARMLESS_QUESTIONS.items()]  # fmt: skip
    return MiniProfilesData(cfg, people, images, base, profiles, evaluation, harmless)


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
