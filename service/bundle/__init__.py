"""The bundle contract: what the trainer writes and the service reads.

``manifest`` (one pydantic model for ``manifest.json``, with the typed
``ModelSpec``), ``store`` (publish, list, point CURRENT) and ``predictor``
(score a bundle with onnxruntime). Both halves import this package and
nothing else of each other: it needs pydantic, numpy and onnxruntime, never
flask or torch.
"""
