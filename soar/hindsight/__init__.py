"""Hindsight learning data: filters (spec §7.2, owned by soar.scoring.filters), relabelling and dedup (§7.1,
§7.3-7.4), data selection (§8, §10) and fine-tuning examples (§9.2).
Entry point: `build_examples(archive_table, tasks, cfg, seed, vote_c)`."""
from soar.hindsight.examples import (
    HINDSIGHT_COLUMNS,
    MODES,
    Example,
    build_examples,
    data_options,
    find_parent,
    refine_example,
    sample_example,
)
from soar.hindsight.relabel import dedup_by_code, dedup_by_output, output_key, relabel
from soar.hindsight.select import (
    REFINE_SELECTIONS,
    SAMPLE_SELECTIONS,
    diverse_pool,
    fully_correct,
    greedy_diverse,
    majority_vote_half,
    rank_greedy,
    select_refinement,
    select_sampling,
)
from soar.scoring.filters import (
    FILTERS,
    grid_distance,
    keep_program,
    mean_pairwise_distance,
    valid_grid,
)

__all__ = [
    "FILTERS",
    "HINDSIGHT_COLUMNS",
    "MODES",
    "REFINE_SELECTIONS",
    "SAMPLE_SELECTIONS",
    "Example",
    "build_examples",
    "data_options",
    "dedup_by_code",
    "dedup_by_output",
    "diverse_pool",
    "find_parent",
    "fully_correct",
    "greedy_diverse",
    "grid_distance",
    "keep_program",
    "majority_vote_half",
    "mean_pairwise_distance",
    "output_key",
    "rank_greedy",
    "refine_example",
    "relabel",
    "sample_example",
    "select_refinement",
    "select_sampling",
    "valid_grid",
]
