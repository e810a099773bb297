"""Testbeds: small, download-free stand-ins for the benchmarks the methods are evaluated on.

- `minicanvas`: a miniature UnlearnCanvas (text-to-image concept erasure on digits x styles).
"""
