"""Sizes of the micro MiniProfiles used by the fast tests (a module of its own: test files import it)."""

# A micro testbed: same code paths as ci, sizes small enough for a unit test (fine-tuning takes about a second).
MICRO = dict(
    n_people=8, n_celebrities=2, n_world_facts=4, n_utility_train=6, n_utility_test=4, n_views=3,
    vision_hidden_size=16, vision_layers=1, vision_heads=2, vision_intermediate_size=32,
    text_hidden_size=32, text_layers=1, text_heads=2, text_intermediate_size=64,
    epochs=4, check_every=2, n_splits=2, forget_fraction=0.25, eval_batch_size=64,
)  # fmt: skip
