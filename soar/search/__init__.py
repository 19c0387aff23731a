"""Search: programs sampled and refined by a model (or replayed, or pooled from finished searches), executed,
scored and archived. The job is soar.search.run (python search.py = python -m soar.search)."""
