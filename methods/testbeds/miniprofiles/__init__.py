"""MiniProfiles: a miniature MLLMU-Bench (a tiny LLaVA that memorised fictitious profiles); see testbed.py.

The package is split by concern (config, data, model, metrics, training, testbed); its names are also
reachable from the package itself (`miniprofiles.build_data`), imported on first use so that reading the
declaration (testbed.yaml) never imports torch."""

from .. import lazy_exports

__getattr__ = lazy_exports(__name__, ("config", "data", "model", "metrics", "training", "testbed"))
