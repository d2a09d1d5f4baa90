"""Tests for reconciler.scheduler: feasibility checks, least-busy spread, rejection summaries."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.scheduler import NodeView, Placement, Request, default_pipeline, summarise


def node(name: str, slots: dict[str, int] | None = None, *, ready: bool = True, schedulable: bool = True,
         used: dict[str, int] | None = None) -> NodeView:
    """A NodeView with ``default`` slots unless told otherwise."""
    return NodeView(name, ready=ready, schedulable=schedulable,
                    slots={"default": 2} if slots is None else dict(slots), used=Counter(used or {}))


def requests(n: int, execution_type: str = "default") -> list[Request]:
    return [Request(f"t{i}", execution_type) for i in range(n)]


def place(reqs: list[Request], nodes: list[NodeView]) -> list[Placement]:
    return default_pipeline().place(reqs, nodes)


def test_spreads_to_least_busy_node():
    """Each placement goes to the node with the smallest fraction of its slots in use."""
    nodes = [node("a", {"default": 4}, used={"default": 2}), node("b", {"default": 4}), node("c", {"default": 2})]

    placed = place(requests(4), nodes)

    # b (0/4) and c (0/2) tie, b wins by name; then c (0/2); then b (1/4) < a,c (2/4, 1/2); then a/b/c all 1/2.
    assert [p.node for p in placed] == ["b", "c", "b", "a"]
    assert {n.name: n.used["default"] for n in nodes} == {"a": 3, "b": 2, "c": 1}
    assert placed[0].reason == "least busy of 3 eligible"


@pytest.mark.parametrize("order", [["a", "b", "c"], ["c", "b", "a"], ["b", "c", "a"]])
def test_ties_break_by_node_name_whatever_the_input_order(order):
    """Equally busy nodes are chosen in name order, independent of the order they are listed in."""
    nodes = [node(n, {"default": 1}) for n in order]

    assert [p.node for p in place(requests(3), nodes)] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "nodes, execution_type, summary",
    [
        (
            lambda: [node("a", {"default": 1}, used={"default": 1}), node("b", {"default": 0}), node("c", ready=False)],
            "default",
            "0/3 nodes: 2 no free default slot, 1 not ready",
        ),
        (
            # equal counts sort by reason text
            lambda: [node("a", ready=False), node("b", schedulable=False), node("c", {"gpu": 1})],
            "default",
            "0/3 nodes: 1 no default slots, 1 not ready, 1 unschedulable",
        ),
        (
            lambda: [node("a", ready=False), node("b", ready=False), node("c", schedulable=False),
                     node("d", {"cpu": 1}), node("e", {"cpu": 1}), node("f", {"cpu": 1})],
            "gpu",
            "0/6 nodes: 3 no gpu slots, 2 not ready, 1 unschedulable",
        ),
        (lambda: [], "default", "0/0 nodes: no nodes; apply a Node manifest"),
    ],
)
def test_rejection_summary(nodes, execution_type, summary):
    """A task no node can take is left unplaced with a summary counting each reason, most common first."""
    views = nodes()
    before = [Counter(n.used) for n in views]

    [placed] = place([Request("t", execution_type)], views)

    assert (placed.task_id, placed.node, placed.reason) == ("t", None, summary)
    assert [n.used for n in views] == before, "a rejected task consumes no slot"


def test_summarise_orders_by_count_then_reason():
    """summarise lists reasons by descending count, ties alphabetically."""
    rejections = Counter({"unschedulable": 1, "not ready": 3, "no free default slot": 3, "no gpu slots": 1})

    assert summarise(8, rejections) == "0/8 nodes: 3 no free default slot, 3 not ready, 1 no gpu slots, 1 unschedulable"


@pytest.mark.parametrize(
    "bad, summary",
    [
        (dict(ready=False), "1 no free default slot, 1 not ready"),
        (dict(schedulable=False), "1 no free default slot, 1 unschedulable"),
        (dict(ready=False, schedulable=False), "1 no free default slot, 1 not ready"),  # first check wins
        (dict(slots={"gpu": 10}), "1 no default slots, 1 no free default slot"),
        (dict(slots={"default": 0}), "2 no free default slot"),
    ],
)
def test_infeasible_node_is_never_chosen(bad, summary):
    """Not-ready, unschedulable and slotless nodes are skipped, even when they are the least busy."""
    nodes = [node("bad", **{"slots": {"default": 10}, **bad}), node("good", {"default": 2})]

    placed = place(requests(3), nodes)

    assert [p.node for p in placed] == ["good", "good", None]
    assert placed[0].reason == "least busy of 2 eligible" if "slots" in bad and "default" in bad["slots"] else "least busy of 1 eligible"
    assert placed[2].reason == f"0/2 nodes: {summary}"


def test_execution_types_are_counted_separately():
    """A node full of one execution type still takes tasks of another."""
    nodes = [node("a", {"default": 1, "gpu": 1})]

    placed = place([Request("d1", "default"), Request("d2", "default"), Request("g1", "gpu")], nodes)

    assert [(p.task_id, p.node) for p in placed] == [("d1", "a"), ("d2", None), ("g1", "a")]
    assert placed[1].reason == "0/1 nodes: 1 no free default slot"
    assert nodes[0].used == Counter({"default": 1, "gpu": 1})


# -- properties ---------------------------------------------------------------------------

TYPES = ["default", "gpu"]

node_specs = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(TYPES), st.integers(0, 4), max_size=2),  # slots
        st.dictionaries(st.sampled_from(TYPES), st.integers(0, 5), max_size=2),  # already used
        st.booleans(),  # ready
        st.booleans(),  # schedulable
    ),
    max_size=5,
)
request_types = st.lists(st.sampled_from(TYPES), max_size=15)


def build(specs) -> list[NodeView]:
    return [node(f"n{i}", slots, used=used, ready=ready, schedulable=sched)
            for i, (slots, used, ready, sched) in enumerate(specs)]


@settings(max_examples=200, deadline=None)
@given(node_specs, request_types)
def test_property_never_more_placements_than_free_slots(specs, types):
    """No node receives more tasks of a type than it had free slots, and only ready schedulable nodes get any."""
    nodes = build(specs)
    free = {(n.name, t): max(0, n.free(t)) for n in nodes for t in TYPES}

    placed = place([Request(f"t{i}", t) for i, t in enumerate(types)], nodes)

    got = Counter((p.node, t) for p, t in zip(placed, types) if p.node)
    for (name, t), n in got.items():
        assert n <= free[(name, t)]
    eligible = {n.name for n in nodes if n.ready and n.schedulable}
    assert {p.node for p in placed if p.node} <= eligible
    for p, t in zip(placed, types):  # a task is left out only when no node had room for it
        if p.node is None:
            assert all(free[(n, t)] == got[(n, t)] for n in eligible)
            assert p.reason.startswith(f"0/{len(nodes)} nodes: ")


@settings(max_examples=100, deadline=None)
@given(node_specs, request_types)
def test_property_same_input_same_placements(specs, types):
    """Placing the same requests on the same nodes twice gives identical placements, whatever the node order."""
    reqs = [Request(f"t{i}", t) for i, t in enumerate(types)]

    first = place(reqs, build(specs))
    second = place(reqs, build(specs))
    shuffled = place(reqs, build(specs)[::-1])

    assert first == second
    assert [p.node for p in first] == [p.node for p in shuffled]
