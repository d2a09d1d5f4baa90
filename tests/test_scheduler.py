"""Tests for reconciler.engine.scheduler: feasibility checks, least-busy and owner-first spread, maxPerNode, host ports,
rejection summaries, and the indexed placement against the full scan."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.engine.scheduler import (
    NodeView, Placement, Request, Shortage, check_free_slot, check_max_per_node, check_mounts, check_network,
    check_ports, check_resources, check_slot_type, default_pipeline, summarise,
)
from reconciler.spec.models import NodeSpec


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


# -- Services: maxPerNode, host ports, owner-first spread ----------------------------------------

WEB = "Service/web"


@pytest.mark.parametrize(
    "max_per_node, on_node, owner, reason",
    [
        (None, 5, WEB, None),  # no cap
        (2, 1, WEB, None),
        (2, 2, WEB, "maxPerNode 2 reached"),
        (1, 3, WEB, "maxPerNode 1 reached"),
        (1, 0, WEB, None),
        (1, 0, "Service/api", None),  # another Service's replicas on the node do not count
    ],
)
def test_check_max_per_node(max_per_node, on_node, owner, reason):
    """maxPerNode refuses a node once that many tasks of the same owner run there."""
    view = node("a")
    view.owners[WEB] = on_node
    req = Request("t", "default", owner=owner, max_per_node=max_per_node)

    assert check_max_per_node(req, view) == reason


@pytest.mark.parametrize(
    "wanted, taken, reason",
    [
        ((("", 8080, "tcp"),), set(), None),
        ((("", 8080, "tcp"),), {("", 8080, "tcp")}, "host port 8080/tcp in use"),
        ((("", 8080, "tcp"),), {("127.0.0.1", 8080, "tcp")}, "host port 8080/tcp in use"),  # "" is every address
        ((("10.0.0.1", 8080, "tcp"),), {("", 8080, "tcp")}, "host port 8080/tcp in use"),
        ((("10.0.0.1", 8080, "tcp"),), {("10.0.0.1", 8080, "tcp")}, "host port 8080/tcp in use"),
        ((("10.0.0.1", 8080, "tcp"),), {("10.0.0.2", 8080, "tcp")}, None),  # two specific addresses
        ((("", 8080, "udp"),), {("", 8080, "tcp")}, None),  # another protocol
        ((("", 8080, "tcp"),), {("", 8081, "tcp")}, None),
        ((("", 9000, "tcp"), ("", 53, "udp")), {("", 53, "udp")}, "host port 53/udp in use"),
    ],
)
def test_check_ports(wanted, taken, reason):
    """A host port conflicts on a node only for the same port and protocol and an overlapping address."""
    view = node("a")
    view.ports.update(taken)

    assert check_ports(Request("t", "default", ports=wanted), view) == reason


NOT_ALLOWED = "not in allowedMounts (exact paths; a subpath needs {path, subpaths: true} and readOnly)"


@pytest.mark.parametrize(
    "allowed, mounts, reason",
    [
        # a string entry: exactly that path, read-write allowed
        (["/srv/allowed"], [("/srv/allowed", False)], None),
        (["/srv/allowed/"], [("/srv/allowed", True)], None),
        (["/srv/allowed"], [("/srv/allowed/", False)], None),  # lexically the same path
        (["/srv/allowed"], [("/srv/allowed/esc", False)], f"bind mount /srv/allowed/esc {NOT_ALLOWED}"),
        (["/srv/allowed"], [("/srv/allowed/esc", True)], f"bind mount /srv/allowed/esc {NOT_ALLOWED}"),
        (["/srv/allowed"], [("/srv/allowed/../../etc", True)], f"bind mount /srv/allowed/../../etc {NOT_ALLOWED}"),
        (["/srv/allowed"], [("/srv/allowedx", False)], f"bind mount /srv/allowedx {NOT_ALLOWED}"),
        (["/srv/allowed"], [("/srv", True)], f"bind mount /srv {NOT_ALLOWED}"),
        ([], [("/var/run/docker.sock", False)], f"bind mount /var/run/docker.sock {NOT_ALLOWED}"),
        (["/"], [("/etc", True)], f"bind mount /etc {NOT_ALLOWED}"),  # "/" is only "/" itself
        # readOnly without subpaths: the exact path, read-only
        ([{"path": "/srv/ro", "readOnly": True}], [("/srv/ro", True)], None),
        ([{"path": "/srv/ro", "readOnly": True}], [("/srv/ro", False)],
         "bind mount /srv/ro must be readOnly (allowedMounts /srv/ro is read-only)"),
        ([{"path": "/srv/ro", "readOnly": True}], [("/srv/ro/x", True)], f"bind mount /srv/ro/x {NOT_ALLOWED}"),
        # subpaths: the path or anything below it, read-only only
        ([{"path": "/srv/ref", "subpaths": True}], [("/srv/ref/x", True)], None),
        ([{"path": "/srv/ref", "subpaths": True}], [("/srv/ref/a/b/../c", True)], None),
        ([{"path": "/srv/ref", "subpaths": True}], [("/srv/ref", True)], None),
        ([{"path": "/srv/ref", "subpaths": True}], [("/srv/ref/x", False)],
         "bind mount /srv/ref/x must be readOnly (allowedMounts /srv/ref allows subpaths read-only)"),
        ([{"path": "/srv/ref", "subpaths": True}], [("/srv/ref", False)],
         "bind mount /srv/ref must be readOnly (allowedMounts /srv/ref allows subpaths read-only)"),
        ([{"path": "/srv/ref", "subpaths": True}], [("/srv/ref/../shadow", True)],
         f"bind mount /srv/ref/../shadow {NOT_ALLOWED}"),
        ([{"path": "/srv/ref", "subpaths": True}], [("/srv/refx", True)], f"bind mount /srv/refx {NOT_ALLOWED}"),
        ([{"path": "/", "subpaths": True}], [("/etc", True)], None),
        # several entries: one that allows the mount is enough; every mount must be allowed
        (["/srv/data", {"path": "/srv/ref", "subpaths": True}], [("/srv/data", False), ("/srv/ref/x", True)], None),
        (["/srv/data", {"path": "/srv/ref", "subpaths": True}], [("/srv/data", False), ("/srv/other", True)],
         f"bind mount /srv/other {NOT_ALLOWED}"),
    ],
)
def test_check_mounts(allowed, mounts, reason):
    """A bind mount must be exactly an allowed path, or lie below a subpaths entry and be read-only;
    paths compare after lexical normalisation, so `..` cannot climb out."""
    view = node("a")
    view.allowed_mounts = NodeSpec(address="unix:///d", allowedMounts=allowed).mount_rules()

    assert check_mounts(Request("t", "default", bind_mounts=tuple(mounts)), view) == reason


@pytest.mark.parametrize(
    "network, allowed, reason",
    [
        (None, (), None),
        ("backend", (), None),  # a user-defined network
        ("bridge", (), None),
        ("none", (), None),
        ("host", (), "network host not in allowedNetworks"),
        ("host", ("container",), "network host not in allowedNetworks"),
        ("host", ("host",), None),
        ("container:db", (), "network container:db not in allowedNetworks"),
        ("container:db", ("host",), "network container:db not in allowedNetworks"),
        ("container:db", ("container",), None),
    ],
)
def test_check_network(network, allowed, reason):
    """host and container:X networks need the node to list them in allowedNetworks; other networks need nothing."""
    view = node("a")
    view.allowed_networks = frozenset(allowed)

    assert check_network(Request("t", "default", network=network), view) == reason


def test_spread_counts_the_owners_tasks_on_a_node_before_busyness():
    """Spread places a replica on the node with fewest of its Service's tasks, even when that node is busier."""
    quiet = node("a", {"default": 4})
    quiet.owners[WEB] = 1
    busy = node("b", {"default": 4}, used={"default": 3})

    [first, second] = place([Request("t1", "default", owner=WEB), Request("t2", "default", owner=WEB)], [quiet, busy])

    assert (first.node, second.node) == ("b", "a")  # then a: 1 web each, a is less busy
    assert (quiet.owners[WEB], busy.owners[WEB]) == (2, 1)
    assert [p.node for p in place([Request("j", "default")], [node("a", {"default": 4}, used={"default": 1}),
                                                            node("b", {"default": 4}, used={"default": 2})])] == ["a"]


def test_take_without_spread_uses_capacity_and_ports_but_not_the_owner_count():
    """A replica being replaced (take spread=False) holds its slot and host ports, but not its Service's spread count."""
    view = node("a", {"default": 2})
    req = Request("old", "default", cpus=1.0, memory=10, owner=WEB, ports=(("", 80, "tcp"),))

    view.take(req, spread=False)

    assert (view.used["default"], view.cpus_used, view.memory_used, view.owners[WEB]) == (1, 1.0, 10, 0)
    assert view.ports == {("", 80, "tcp")}
    assert check_max_per_node(replace(req, max_per_node=1), view) is None
    view.take(req)
    assert view.owners[WEB] == 1 and check_max_per_node(replace(req, max_per_node=1), view) == "maxPerNode 1 reached"


def test_max_per_node_and_ports_refusals_are_summarised_per_node():
    """Replicas beyond maxPerNode or a taken host port stay unplaced with the reasons counted."""
    nodes = [node("a", {"default": 9}), node("b", {"default": 9})]
    capped = [Request(f"c{i}", "default", owner=WEB, max_per_node=1) for i in range(3)]
    ported = [Request(f"p{i}", "default", owner="Service/api", ports=(("", 80, "tcp"),)) for i in range(3)]

    placed = place([*capped, *ported], nodes)

    assert [p.node for p in placed] == ["a", "b", None, "a", "b", None]
    assert placed[2].reason == "0/2 nodes: 2 maxPerNode 1 reached"
    assert placed[5].reason == "0/2 nodes: 2 host port 80/tcp in use"


@pytest.mark.parametrize(
    "check, req, view, reason, shortage",
    [
        (check_free_slot, Request("t", "default"), node("a", {"default": 1}, used={"default": 1}),
         "no free default slot", True),
        (check_resources, Request("t", "default", cpus=2.0), NodeView("a", True, True, {}, cpus=4.0, cpus_used=3.0),
         "insufficient cpu", True),
        (check_resources, Request("t", "default", memory=2), NodeView("a", True, True, {}, memory=4, memory_used=3),
         "insufficient memory", True),
        (check_resources, Request("t", "default", cpus=8.0), NodeView("a", True, True, {}, cpus=4.0),
         "cpu request exceeds node", False),
        (check_resources, Request("t", "default", memory=8), NodeView("a", True, True, {}, memory=4),
         "memory request exceeds node", False),
        (check_slot_type, Request("t", "gpu"), node("a"), "no gpu slots", False),
        (check_max_per_node, Request("t", "default", owner=WEB, max_per_node=1),
         NodeView("a", True, True, {"default": 2}, owners=Counter({WEB: 1})), "maxPerNode 1 reached", False),
    ],
)
def test_only_a_want_of_free_capacity_is_a_shortage(check, req, view, reason, shortage):
    """A rejection says by its type, not its text, whether free capacity would cure it."""
    got = check(req, view)
    assert got == reason and isinstance(got, Shortage) is shortage


def test_only_nodes_short_of_capacity_are_waited_on():
    """A refused task waits on (and so reserves) the nodes that lack free capacity, not those that never fit."""
    nodes = [node("full", {"default": 1}, used={"default": 1}), node("gpu-only", {"gpu": 1}),
             NodeView("small", True, True, {"default": 1}, cpus=1.0)]

    [placed] = default_pipeline().place([Request("t", "default", cpus=2.0)], nodes)

    assert placed.node is None and placed.waits_on == {"full"}
    assert placed.reason == "0/3 nodes: 1 cpu request exceeds node, 1 no default slots, 1 no free default slot"


def _full_scan(reqs: list[Request], nodes: list[NodeView]) -> list[Placement]:
    """The specification of Pipeline.place: ``place_one`` (a full scan) per request, with reservations."""
    pipeline, reserved, out = default_pipeline(), {}, []
    for r in reqs:
        held = reserved.setdefault(r.execution_type, {})
        one = pipeline.place_one(r, nodes, held)
        for name in one.waits_on:
            held.setdefault(name, r.task_id)
        out.append(one)
    return out


OWNERS = ["", "Service/web", "Service/api", "Job/batch"]
PORTS = [(), (("", 80, "tcp"),), (("10.0.0.1", 80, "tcp"),), (("10.0.0.2", 80, "tcp"),), (("", 80, "udp"),),
         (("", 443, "tcp"), ("", 80, "tcp"))]

service_nodes = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(TYPES), st.integers(1, 6), min_size=1, max_size=2),  # slots
        st.dictionaries(st.sampled_from(OWNERS[1:]), st.integers(0, 2), max_size=2),  # replicas already there
        st.sampled_from([(), (), *PORTS]),  # host ports already published there
        st.sampled_from([True, True, True, False]),  # ready
        st.sampled_from([None, None, 4.0]),  # cpus
    ),
    min_size=1, max_size=5,
)
service_requests = st.lists(
    st.tuples(st.sampled_from(["default", "default", "gpu"]), st.sampled_from(OWNERS), st.sampled_from(PORTS),
              st.sampled_from(["spread", "spread", "binpack"]), st.sampled_from([None, None, 1.0, 3.0])),
    min_size=1, max_size=25,
)
caps = st.fixed_dictionaries({o: st.sampled_from([None, 1, 2]) for o in OWNERS[1:]})  # maxPerNode is per owner


@settings(max_examples=150, deadline=None)
@given(service_nodes, service_requests, caps)
def test_property_indexed_placement_equals_the_full_scan_with_owners_caps_and_ports(node_specs, request_specs, cap_of):
    """With owners, maxPerNode and host ports, the heap-indexed Pipeline.place picks what a full scan would."""
    def views() -> list[NodeView]:
        out = []
        for i, (slots, owners, ports, ready, cpus) in enumerate(node_specs):
            v = NodeView(f"n{i}", ready=ready, schedulable=True, slots=dict(slots), cpus=cpus)
            v.owners.update(owners)
            v.used["default"] += sum(owners.values())
            v.ports.update(ports)
            out.append(v)
        return out

    reqs = [Request(f"t{i}", etype, owner=owner, max_per_node=cap_of.get(owner), ports=ports, placement=mode,
                    cpus=cpus)
            for i, (etype, owner, ports, mode, cpus) in enumerate(request_specs)]
    fast_nodes, slow_nodes = views(), views()

    fast = default_pipeline().place(reqs, fast_nodes)
    slow = _full_scan(reqs, slow_nodes)

    assert [p.node for p in fast] == [p.node for p in slow]
    first_refusal: dict = {}  # a refused shape keeps the summary of its first refusal for the rest of the pass
    for r, f, s in zip(reqs, fast, slow):
        shape = replace(r, task_id="", owner=r.owner if r.max_per_node is not None else "")  # maxPerNode counts it
        expected = first_refusal.setdefault(shape, s.reason) if s.node is None else s.reason
        assert f.reason == expected
    for a, b in zip(fast_nodes, slow_nodes):
        assert (a.used, a.owners, a.ports) == (b.used, b.owners, b.ports)
    for i, view in enumerate(fast_nodes):  # and no placement broke a cap or took a published port twice
        before = node_specs[i][1]
        for owner, cap in cap_of.items():
            if cap is not None:
                assert view.owners[owner] <= max(cap, before.get(owner, 0))
        got = [r.ports for p, r in zip(fast, reqs) if p.node == view.name]
        published = [port for ports in [node_specs[i][2], *got] for port in ports]
        for j, (ip, port, proto) in enumerate(published):
            for other_ip, other_port, other_proto in published[j + 1:]:
                assert not (port == other_port and proto == other_proto and (not ip or not other_ip or ip == other_ip))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.dictionaries(st.sampled_from(OWNERS[1:]), st.integers(0, 3), max_size=3)),
                min_size=1, max_size=6),
       st.lists(st.tuples(st.sampled_from(OWNERS), st.sampled_from(["spread", "spread", "binpack"])),
                min_size=1, max_size=40))
def test_property_owners_sharing_one_heap_get_what_a_full_scan_gives(node_specs, request_specs):
    """Requests of many owners share a heap keyed without the owner; each still gets the node where it has
    fewest tasks (then least busy), also once it has tasks on every node and gets a heap of its own."""
    def views() -> list[NodeView]:
        out = []
        for i, (slots, owners) in enumerate(node_specs):
            v = NodeView(f"n{i}", ready=True, schedulable=True, slots={"default": slots + sum(owners.values())})
            v.owners.update(owners)
            v.used["default"] += sum(owners.values())
            out.append(v)
        return out

    reqs = [Request(f"t{i}", "default", owner=owner, placement=mode) for i, (owner, mode) in enumerate(request_specs)]
    fast_nodes, slow_nodes = views(), views()

    fast = default_pipeline().place(reqs, fast_nodes)
    slow = _full_scan(reqs, slow_nodes)

    assert [(p.node, p.reason) for p in fast if p.node] == [(p.node, p.reason) for p in slow if p.node]
    assert [p.node for p in fast] == [p.node for p in slow]
    for a, b in zip(fast_nodes, slow_nodes):
        assert (a.used, a.owners) == (b.used, b.owners)
