"""The Feeds page's bar charts: labels show whole, however long an exact rule name is."""

from __future__ import annotations

import re

from feedstock.catalog_page import LABEL_CHARS, bar_chart


def test_a_bar_label_shows_the_whole_rule_name_and_the_chart_widens_for_it():
    long_rule = "quality:gopher_repetition:dup_line_chars"
    svg = bar_chart("drop reasons", {long_rule: 3, "dedup:exact": 1})
    assert f">{long_rule}</text>" in svg
    label_x = int(re.search(r'<text x="(\d+)"', svg).group(1))
    assert label_x >= 6 * len(long_rule)  # right-aligned at x: the label fits to its left
    short = bar_chart("languages", {"en": 44, "de": 1})
    assert int(re.search(r'<svg [^>]*width="(\d+)"', short).group(1)) < int(
        re.search(r'<svg [^>]*width="(\d+)"', svg).group(1)
    )


def test_a_label_past_the_limit_is_cut_but_its_tooltip_is_whole():
    key = "x" * (LABEL_CHARS + 40)
    svg = bar_chart("reject reasons", {key: 2})
    assert f">{'x' * LABEL_CHARS}</text>" in svg and f"<title>{key}: 2</title>" in svg


def test_no_counts_no_chart():
    assert bar_chart("drop reasons", {}) == "" and bar_chart("drop reasons", {"a": 0}) == ""
