"""Attack cards, grouped by modality like the unlearning cards (`methods/attacks/<modality>/<attack>.py`): each runs
against an edited model (the modality's edited-model interface) and is registered with `kind: attack`.
`python -m methods matrix --testbed T` runs every attack card of a testbed against every unlearn card of it."""
