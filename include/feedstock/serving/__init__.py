"""Serving: the search API and the semantic cache (``feedstock serve``)."""
