"""Analysis of result rows: the rows view, metrics, paired statistics, aggregates, regression checks."""
