"""What a finished run says: the summary and its intervals, where each strategy breaks, the Pareto
set, the pick within a budget, the report and its plots, and comparisons between runs."""
