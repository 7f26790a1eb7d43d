"""The page model, the text renderer and the HTML reading contract."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mem1_envs.shop.engine import load_shop
from mem1_envs.shop.pages import (
    ACTION_ERRORS,
    RESULTS_PER_PAGE,
    PageState,
    build_page,
    transition,
)
from mem1_envs.shop.render_html import render_html, text_from_html
from mem1_envs.shop.render_text import render_text

SHOP = load_shop(3000, seed=0)


def random_walk(seed: int, steps: int = 40):
    """States reached by clicking random buttons of each page (searching on the search page)."""
    rng = np.random.default_rng(seed)
    state = PageState()
    states = [state]
    queries = ["gluten free potato chips", "black hoodie", "usb cable fast charging", "zzz nothing", "coffee"]
    for _ in range(steps):
        page = build_page(SHOP, state)
        if page.search_box:
            action = f"search[{queries[int(rng.integers(len(queries)))]}]"
        else:
            buttons = page.buttons()
            action = buttons[int(rng.integers(len(buttons)))].action
        result = transition(SHOP, state, action)
        assert result.error is None, (state, action)
        state = result.state
        states.append(state)
    return states


def test_walks_visit_every_page_kind_and_html_reads_as_text():
    kinds = set()
    for seed in range(12):
        for state in random_walk(seed):
            kinds.add(state.kind)
            text = render_text(SHOP, state)
            assert text_from_html(render_html(SHOP, state)) == text
            assert PageState.from_query(state.to_query()) == state
    assert kinds == {"search", "results", "item", "sub", "done"}


def test_transitions_are_pure_and_deterministic():
    for seed in range(3):
        assert random_walk(seed) == random_walk(seed)


def test_every_listed_action_is_accepted_and_only_those():
    for state in random_walk(4, steps=30):
        page = build_page(SHOP, state)
        text = render_text(SHOP, state)
        listed = text.rsplit("\n", 1)[1].removeprefix("Available actions: ").split(", ")
        assert listed == page.actions()
        for action in listed:
            if action != "search[<query>]":
                assert transition(SHOP, state, action).error is None
        assert transition(SHOP, state, "click[no such button]").error == "unknown_button"


def test_results_pagination_and_navigation():
    state = transition(SHOP, PageState(), "search[potato chips]").state
    codes = re.findall(r"\[button\] (P\d{7}) \[button_\]", render_text(SHOP, state))
    assert len(codes) == RESULTS_PER_PAGE
    second = transition(SHOP, state, "click[Next >]").state
    assert second.results_page == 2
    assert set(re.findall(r"P\d{7}", render_text(SHOP, second))).isdisjoint(codes)
    assert transition(SHOP, second, "click[< Prev]").state == state
    assert transition(SHOP, state, "click[< prev]").state == PageState()
    last = state
    for _ in range(10):
        result = transition(SHOP, last, "click[next >]")
        if result.error:
            break
        last = result.state
    assert last.results_page == 5 and "Next >" not in render_text(SHOP, last)  # 50 results, 10 a page
    item = transition(SHOP, second, f"click[{codes[0]}]")
    assert item.error == "unknown_button"  # a product of page 1 is not on page 2
    item = transition(SHOP, state, f"click[{codes[0].lower()}]").state
    assert item.kind == "item" and item.results_page == 1
    assert transition(SHOP, item, "click[< prev]").state == state


def test_options_are_selected_kept_on_sub_pages_and_bought():
    state = transition(SHOP, PageState(), "search[hoodie]").state
    code = re.search(r"P\d{7}", render_text(SHOP, state)).group(0)
    item = transition(SHOP, state, f"click[{code}]").state
    options = SHOP.catalog.options(item.product)
    kind, values = options[0]
    chosen = transition(SHOP, item, f"click[{values[1]}]").state
    assert dict(chosen.options) == {kind: values[1]}
    assert f"[clicked button] {values[1]} [clicked button_]" in render_text(SHOP, chosen)
    rechosen = transition(SHOP, chosen, f"click[{values[0]}]").state
    assert dict(rechosen.options) == {kind: values[0]}
    features = transition(SHOP, rechosen, "click[features]").state
    assert features.kind == "sub" and "Features:" in render_text(SHOP, features)
    back = transition(SHOP, features, "click[< prev]").state
    assert back == rechosen
    bought = transition(SHOP, back, "click[buy now]")
    assert bought.purchase == (item.product, ((kind, values[0]),))
    assert bought.state.kind == "done" and f"{kind}: {values[0]}" in render_text(SHOP, bought.state)
    assert transition(SHOP, bought.state, "click[back to search]").state == PageState()


@pytest.mark.parametrize(
    ("action", "error"),
    [
        ("", "malformed"),
        ("buy it", "malformed"),
        ("click[", "malformed"),
        ("jump[high]", "malformed"),
        ("search[   ]", "empty_query"),
        ("search[" + "x" * 201 + "]", "too_long"),
        ("click[" + "y" * 5000 + "]", "too_long"),
        ("click[buy now]", "unknown_button"),
    ],
)
def test_bad_actions_leave_the_state_unchanged(action, error):
    result = transition(SHOP, PageState(), action)
    assert (result.error, result.state, result.purchase) == (error, PageState(), None)
    assert error in ACTION_ERRORS


def test_search_only_where_there_is_a_search_box():
    results = transition(SHOP, PageState(), "search[tea]").state
    assert transition(SHOP, results, "search[coffee]").error == "no_search_box"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_no_action_crashes_the_page_model(action):
    for state in (PageState(), PageState("results", query="tea"), PageState("item", "tea", 1, 5)):
        result = transition(SHOP, state, action)
        assert result.error in (None, *ACTION_ERRORS)
        if result.error:
            assert result.state == state


def test_html_is_self_contained_and_marks_every_clickable():
    for state in random_walk(7, steps=25):
        html = render_html(SHOP, state)
        assert "http://" not in html and "https://" not in html and "<script" not in html
        actions = re.findall(r'data-action="([^"]*)"', html)
        page = build_page(SHOP, state)
        expected = ["search"] if page.search_box else []
        import html as html_lib

        assert [html_lib.unescape(a) for a in actions] == expected + [b.action for b in page.buttons()]
        assert f'data-state="{html_lib.escape(state.to_query())}"' in html


def test_text_with_markup_characters_survives_html():
    state = transition(SHOP, PageState(), 'search[<b>"chips" & dips</b>]').state
    assert text_from_html(render_html(SHOP, state)) == render_text(SHOP, state)
    assert '"<b>"chips" & dips</b>"' in render_text(SHOP, state)


def test_from_query_tolerates_garbage():
    assert PageState.from_query("kind=teleport&page=x&product=y") == PageState()


def test_sanitize_keeps_reachable_states_and_drops_impossible_ones():
    from mem1_envs.shop.pages import sanitize

    for state in random_walk(9, steps=30):
        assert sanitize(SHOP, PageState.from_query(state.to_query())) == state
    bad = [
        PageState("item", "tea", 1, len(SHOP.catalog)),
        PageState("item", "tea", 1, -1),
        PageState("results", "tea", 99),
        PageState("sub", "tea", 1, 3, (), "reviews"),
        PageState("item", "tea", 1, 3, (("color", "no such value"),)),
    ]
    for state in bad:
        assert sanitize(SHOP, state) == PageState()


def test_state_round_trips_through_an_address_with_awkward_values():
    state = PageState("item", 'a&b=c "q" | x/y', 2, 7, (("size", "12 | pack"), ("color", "a=b&c")), "")
    assert PageState.from_query(state.to_query()) == state
