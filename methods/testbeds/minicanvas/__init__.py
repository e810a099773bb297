"""MiniCanvas: a miniature UnlearnCanvas (text-to-image concept erasure on 8x8 digits x 4 styles); see testbed.py."""
