"""Where the transformer blocks of a LLaVA-style model are, for the cards that read or edit one block (RMU's
activations, MANU's MLP neurons): the language model's decoder layers and the vision tower's encoder layers, found
the same way on the tiny testbed model and on a real `LlavaForConditionalGeneration`."""

from __future__ import annotations

import torch


def language_layers(model) -> torch.nn.ModuleList:
    """The decoder layers of the language model (Llama: `model.model.language_model.layers`)."""
    return model.get_decoder().layers


def vision_layers(model) -> torch.nn.ModuleList:
    """The encoder layers of the vision tower (CLIP: `vision_tower.encoder.layers` or `.vision_model.encoder.layers`)."""
    tower = model.model.vision_tower
    tower = getattr(tower, "vision_model", tower)
    return tower.encoder.layers


def layer_output(module_output) -> torch.Tensor:
    """A block's hidden states, whether it returns a tensor or a tuple whose first element is the tensor."""
    return module_output[0] if isinstance(module_output, tuple) else module_output


class Capture:
    """Forward hooks that keep the outputs of some modules during one forward pass (a context manager):
    `with Capture({"a": module}) as seen: model(**inputs)` leaves seen["a"] as a list of outputs, one per call."""

    def __init__(self, modules: dict):
        self.modules = modules
        self.outputs = {name: [] for name in modules}
        self._handles = []

    def __enter__(self) -> dict:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(
                lambda _module, _inputs, output, name=name: self.outputs[name].append(layer_output(output))))
        return self.outputs

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
