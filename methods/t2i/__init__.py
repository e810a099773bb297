"""Text-to-image erasure cards, one readable file each (ESD, UCE, Concept Ablation, SLD), and what they share
(`diffusion.py`: the components bundle, the erase request, guided DDIM sampling and the edited-model interface).

A card's entry point is `erase(components, request, config, seed) -> EditedDiffusion`; it never edits its input."""
