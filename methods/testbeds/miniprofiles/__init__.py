"""MiniProfiles: a miniature MLLMU-Bench (a tiny LLaVA that memorised fictitious profiles); see testbed.py."""
