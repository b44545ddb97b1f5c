"""CPU and memory quantities as integers, for sums on the dashboard."""

from projects.quantities import parse_quantity


def millicores(value):
    try:
        return int(parse_quantity(value) * 1000)
    except (ValueError, TypeError):
        return 0


def bytes_(value):
    try:
        return int(parse_quantity(value))
    except (ValueError, TypeError):
        return 0
