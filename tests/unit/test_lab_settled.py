"""The lab tier's settled-pair check (lab/carp_tools.pair_problems),
which every lab module passes before it starts and after it ends: each way
a pair can be unsettled is named, with the node and what was seen."""

from lab import carp_tools

VIPS = carp_tools.VIPS


def settled():
    return {
        "holders": {v: ["lb-a"] for v in VIPS},
        "carp": {
            "lb-a": {4: "MASTER", 44: "MASTER", 5: "MASTER", 55: "MASTER"},
            "lb-b": {4: "BACKUP", 44: "BACKUP", 5: "BACKUP", 55: "BACKUP"},
        },
        "maintenance": {"lb-a": False, "lb-b": False},
        "haproxy": {"lb-a": True, "lb-b": True},
        "bird": {"lb-a": True, "lb-b": True},
        "jobs": {"lb-a": [], "lb-b": []},
    }


def test_the_settled_pair_has_no_problem():
    assert carp_tools.pair_problems(settled()) == []


def test_each_unsettled_condition_is_named_with_its_node():
    cases = [
        (("holders", VIPS[2]), ["lb-a", "lb-b"], "VIP 198.18.2.5 held by ['lb-a', 'lb-b']"),
        (("holders", VIPS[0]), [], "VIP 198.18.2.4 held by no node"),
        (("holders", VIPS[1]), ["lb-b"], "VIP 198.18.2.44 held by ['lb-b'], not lb-a alone"),
        (("carp", "lb-a"), {4: "MASTER", 44: "INIT", 5: "MASTER", 55: "MASTER"}, "lb-a: CARP states"),
        (("carp", "lb-b"), "Minion did not return. [No response]", "lb-b: carp.status answered"),
        (("maintenance", "lb-a"), True, "lb-a: carp.in_maintenance is True"),
        (("maintenance", "lb-b"), None, "lb-b: carp.in_maintenance is None"),
        (("haproxy", "lb-b"), False, "lb-b: HAProxy listens on nothing"),
        (("bird", "lb-a"), False, "lb-a: the routing SLS configured BIRD and it does not answer"),
        (("jobs", "lb-a"), ["state.single"], "lb-a: jobs still running ['state.single']"),
    ]
    for (part, key), value, said in cases:
        view = settled()
        view[part][key] = value
        problems = carp_tools.pair_problems(view)
        assert len(problems) == 1 and said in problems[0], (part, key, problems)
