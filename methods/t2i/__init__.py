"""Text-to-image erasure cards, one readable file each (ESD, UCE, Concept Ablation, SLD, SalUn, EraseDiff,
Scissorhands, Selective Amnesia, Forget-Me-Not, SafeGen, task vectors, ConceptPrune), and what they share
(`diffusion.py`: the components bundle, the erase request, guided DDIM sampling and the edited-model interface;
`training.py`: images of a prompt, the denoising losses and the parameter groups of the fine-tuning cards).

A card's entry point is `erase(components, request, config, seed) -> EditedDiffusion`; it never edits its input."""
