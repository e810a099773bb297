"""The generic core every card and testbed shares: seeding, provenance, the safetensors cache, config checks and the
results file. Nothing here knows a modality, a testbed or a card."""
