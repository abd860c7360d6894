"""Training: recipes, datasets, losses, the training loop and ONNX export.

Imports torch; nothing here runs at import time.
"""
