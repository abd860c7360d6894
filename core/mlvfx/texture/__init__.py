"""Texture-synthesis internals behind :mod:`mlvfx.ops.texture`.

``patchmatch`` (the multi-scale coordinate-map synthesiser), ``quilting`` (the Image Quilting
baseline), ``metrics`` (seam score, look distance, verbatim-copy share), ``maps`` (material sets
as one channel stack) and ``cli`` (the ``mlvfx texture`` and ``mlvfx eval texture`` commands).
Importing this package imports nothing heavy.
"""
