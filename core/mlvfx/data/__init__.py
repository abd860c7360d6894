"""Training-data factories.

``mlvfx.data.materials`` renders material samples with Blender (needs the ``blender`` extra; bpy
is imported only when a render starts), ``mlvfx.data.augment`` augments them in memory and
``mlvfx.data.splits`` defines train/validation splits.
"""
