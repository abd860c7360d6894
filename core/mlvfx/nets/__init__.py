"""Network definitions: small, CPU-friendly ``nn.Module``s behind the operators.

Importing this package imports torch; the operators import it lazily.
"""

from mlvfx.nets.material import (
    MaterialNet,
    MaterialNetConfig,
    config_from_state_dict,
    count_flops_per_pixel,
    count_parameters,
    material_net_from_state_dict,
)

__all__ = [
    "MaterialNet",
    "MaterialNetConfig",
    "config_from_state_dict",
    "count_flops_per_pixel",
    "count_parameters",
    "material_net_from_state_dict",
]
