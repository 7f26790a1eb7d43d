"""The wiki, its links, the page model and the canonical text of MEM1-WebQA."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mem1_envs.qa.world import SMALL_WORLD, generate_world
from mem1_envs.webqa.links import find_links
from mem1_envs.webqa.pages import (
    ACTION_ERRORS,
    MAX_BACK,
    PARAGRAPHS_PER_SCREEN,
    Page,
    PageState,
    Segment,
    build_page,
    sanitize,
    transition,
)
from mem1_envs.webqa.render_text import render_page, render_text
from mem1_envs.webqa.wiki import wiki_from_corpus, wiki_from_world

WORLD = generate_world(SMALL_WORLD, seed=0)
WIKI = wiki_from_world(WORLD)


def random_walk(seed: int, steps: int = 40) -> list[PageState]:
    """States reached by random valid actions: searches for entity names, clicks, backs, scrolls."""
    rng = np.random.default_rng(seed)
    state, states = PageState(), [PageState()]
    for _ in range(steps):
        page = build_page(WIKI, state)
        choice = int(rng.integers(10))
        if choice == 0 or not page.links():
            action = f"search[{WORLD.entity_names[int(rng.integers(len(WORLD.entity_names)))]}]"
        elif choice == 1 and state.back:
            action = "back[]"
        elif choice == 2 and state.kind == "article" and "Scroll down" in render_text(WIKI, state):
            action = "scroll[down]"
        else:
            links = page.links()
            action = f"click[{links[int(rng.integers(len(links)))]}]"
        result = transition(WIKI, state, action)
        assert result.error is None, (state, action)
        state = result.state
        states.append(state)
    return states


def test_world_pages_link_to_the_related_entities():
    person = WORLD.entities["people"][7]
    cities, companies, unis = (
        WORLD.entities["cities"],
        WORLD.entities["companies"],
        WORLD.entities["universities"],
    )
    page = build_page(WIKI, PageState("article", title=person["name"]))
    assert {
        cities[person["city"]]["name"],
        unis[person["university"]]["name"],
        companies[person["employer"]]["name"],
    } <= set(page.links())
    company = companies[3]
    founder = WORLD.entities["people"][company["founder"]]["name"]
    assert {founder, cities[company["city"]]["name"]} <= set(
        build_page(WIKI, PageState("article", title=company["name"])).links()
    )


def test_walks_are_deterministic_round_trip_and_render_by_the_rules():
    kinds = set()
    for seed in range(8):
        walk = random_walk(seed)
        assert walk == random_walk(seed)
        for state in walk:
            kinds.add(state.kind)
            assert PageState.from_query(state.to_query()) == state
            assert sanitize(WIKI, state) == state
            page = build_page(WIKI, state)
            text = render_text(WIKI, state)
            lines = text.split("\n")
            assert lines[0] == f"# {page.title}" and all(line == line.strip() and line for line in lines)
            assert "  " not in text
            for line in page.lines:
                for segment in line:
                    assert not re.search(r"[\[\]\n]", segment.text)
            for label in page.links():  # every link shown is clickable by its visible label
                assert transition(WIKI, state, ("click", label.upper())).error is None
    assert kinds == {"search", "results", "article"}


def test_render_rules_on_a_hand_made_page():
    page = Page(
        "A  title", ((Segment(" x "), Segment("y", "kind=search"), Segment("\tz")), (Segment(" "),), ())
    )
    assert render_page(page) == "# A title\nx [y] z"


def test_errors_leave_the_state_unchanged():
    article = PageState("article", title=WORLD.entities["cities"][0]["name"])
    cases = {
        "malformed": [
            (PageState(), "go[x]"),
            (PageState(), 42),
            (PageState(), ("fly", "x")),
            (PageState(), None),
        ],
        "too_long": [(PageState(), "search[" + "a" * 300 + "]"), (PageState(), "x" * 5000)],
        "empty_query": [(PageState(), "search[   ]")],
        "unknown_link": [(PageState(), "click[nowhere]"), (article, "click[]")],
        "no_back": [(PageState(), "back[]")],
        "bad_scroll": [(article, "scroll[sideways]")],
        "no_scroll": [(PageState(), "scroll[down]"), (article, "scroll[up]")],
    }
    assert set(cases) == set(ACTION_ERRORS)
    for error, pairs in cases.items():
        for state, action in pairs:
            assert transition(WIKI, state, action) == transition(WIKI, state, action)
            result = transition(WIKI, state, action)
            assert (result.error, result.state) == (error, state), (state, action)


def test_scroll_moves_a_window_and_back_stack_is_capped():
    city = max(range(len(WIKI)), key=lambda a: len(WIKI.paragraph_range(a)))
    n = len(WIKI.paragraph_range(city))
    assert n > PARAGRAPHS_PER_SCREEN
    state = PageState("article", title=WIKI.titles[city])
    moved = transition(WIKI, state, "scroll[]").state
    assert moved.offset == PARAGRAPHS_PER_SCREEN and f"of {n}." in render_text(WIKI, moved)
    assert transition(WIKI, moved, "scroll[up]").state == state
    for _ in range(MAX_BACK + 5):
        state = transition(WIKI, state, "search[university]").state
    assert len(state.back) == MAX_BACK


def test_sanitize_rejects_states_the_wiki_cannot_show():
    for bad in (
        PageState("article", title="No Such Article"),
        PageState("article", title=WIKI.titles[0], offset=1),
        PageState("results", query=" "),
        PageState("search", back=(PageState("article", title="Nope"),)),
    ):
        assert sanitize(WIKI, bad) == PageState()
    assert PageState.from_query("kind=weird&offset=x") == PageState()


@pytest.mark.parametrize("owners", [[1, 0, 0], [2, 2, 2]])
def test_links_are_exact_longest_first_and_once_per_paragraph(owners):
    titles = ["Norway", "Oslo", "Oslo City"]
    texts = ["Oslo lies in Norway, Norway!", "Big Oslo City, Oslo and Osloville.", "Oslo\nNorway"]
    links = find_links(texts, titles, owners)
    found = [[(texts[p][s:e], titles[t]) for s, e, t in links.spans(p)] for p in range(3)]
    for p, spans in enumerate(found):
        assert all(text == title for text, title in spans)
        targets = [title for _, title in spans]
        assert len(targets) == len(set(targets)) and titles[owners[p]] not in targets
    assert ("Oslo City", "Oslo City") in found[1] or owners[1] == 2


def test_corpus_rows_group_by_title_in_order():
    rows = [
        {"id": str(i), "contents": f'"Top{i % 3}"\nText {i} mentions Top{(i + 1) % 3}.'} for i in range(9)
    ]
    wiki = wiki_from_corpus(rows)
    assert wiki.titles == ["Top0", "Top1", "Top2"]
    assert wiki.paragraphs(1) == ["Text 1 mentions Top2.", "Text 4 mentions Top2.", "Text 7 mentions Top2."]
    assert [wiki.titles[t] for _, _, t in wiki.links_of(0)] == ["Top1"]
