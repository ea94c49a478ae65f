"""The toy world: a seeded synthetic stand-in for Wikipedia + the seven QA benchmarks (docs/toyworld.md)."""

from searche1.data.toyworld.checks import check_world, fact_agreement, format_check_report
from searche1.data.toyworld.generator import (
    TEST_SETS,
    Fact,
    World,
    WorldConfig,
    fact_half,
    generate_world,
    world_summary,
    write_world,
)
from searche1.data.toyworld.names import NAME_POOL, disjoint_names, vocabulary_words

__all__ = [
    "NAME_POOL", "TEST_SETS", "Fact", "World", "WorldConfig", "check_world", "disjoint_names", "fact_agreement",
    "fact_half", "format_check_report", "generate_world", "vocabulary_words", "world_summary", "write_world",
]
