"""Markets as partitions: every asset of the graph has one partition per market of the scenario.

Dynamic, because the markets come from the scenario (``markets.names``) or from a landing file's market column,
not from code: `python -m mmm_assets run`, the weekly schedule and the landing-folder sensor add the markets they
find before they start runs for them.
"""

from dagster import DynamicPartitionsDefinition

MARKETS = DynamicPartitionsDefinition(name="market")


def unknown_markets(instance, markets) -> list[str]:
    """The markets (in their order) the instance does not have as partitions yet."""
    known = set(instance.get_dynamic_partitions(MARKETS.name))
    return [m for m in markets if m not in known]


def register_markets(instance, markets: list[str]) -> list[str]:
    """Add the markets the instance does not know yet as partitions; returns the ones added."""
    new = unknown_markets(instance, markets)
    if new:
        instance.add_dynamic_partitions(MARKETS.name, new)
    return new
