"""The report layer: results tables, statistics, verdicts, figures, compare_cells, seed plans."""
