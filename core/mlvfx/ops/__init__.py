"""The operators users call: material (from a photo), texture, smoke."""
