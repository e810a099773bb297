"""CLIP unlearning cards: one file per method (task vectors, NegMerge, SLUG, CLIPErase, zero-shot class unlearning
with synthetic samples, CleanCLIP) and the edited-model interface they return (edited.py)."""
