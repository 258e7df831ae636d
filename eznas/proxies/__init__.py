"""Hand-designed zero-cost proxies (baselines), each registered by name with `proxy`.

``eznas.proxies.get("synflow")(net, inputs, targets)`` scores one network on one batch and
leaves the network untouched (see `registry`). Set-level proxies (``az_nas``) return a dict of
components; ``get(name).score_set(values)`` turns the values of a set of networks into scores.
The baseline modules are imported here, explicitly, which registers them.
"""

from eznas.proxies import size, gradient, activation, eznas_a, az_nas  # noqa: F401,I001  (registers, in this order)
from eznas.proxies.registry import Baseline, get, names, proxy

__all__ = ["Baseline", "get", "names", "proxy"]
