"""The section parser: real configs round-trip byte for byte, and editing
one section changes only that section's lines (checked with a line diff,
and with the real `haproxy -c` on the edited files)."""

import copy
import difflib
import os
import shutil
import subprocess

import pytest

import haproxy_config as hc
import lb_render_haproxy
import lb_topology
from tests.support import REPO

FIXTURES = os.path.join(REPO, "tests", "fixtures", "haproxy")
REAL = ["seed-primary.cfg", "seed-secondary.cfg", "debian-default.cfg", "large.cfg"]


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8", newline="") as fh:
        return fh.read()


def haproxy_check(tmp_path, text, name="check.cfg"):
    path = tmp_path / name
    path.write_text(text)
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    return subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)


def changed_line_numbers(before: str, after: str) -> set[int]:
    """0-based numbers of the lines of `before` that a diff touches (an
    insertion counts as touching the line it goes before)."""
    a, b = hc.split_lines(before), hc.split_lines(after)
    touched = set()
    for op, i1, i2, _, _ in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "equal":
            touched.update(range(i1, max(i2, i1 + 1)))
    return touched


def line_span(cfg: hc.Config, key) -> range:
    """Line numbers of a section's lines (title comments, header, body)."""
    n = len(cfg.preamble)
    for s in cfg.sections:
        if s.key == key:
            return range(n, n + len(s.lines()))
        n += len(s.lines())
    raise KeyError(key)


# ---------------------------------------------------------------------------
# fixtures are what they say they are


def test_fixtures_are_the_real_files():
    seed = fixture("seed-primary.cfg")
    assert seed.startswith("# /usr/local/etc/haproxy.conf - Primary #\n")
    assert "\t\tmode http\n" in seed  # the seed's tabs, verbatim
    with open(os.path.join(REPO, "tests", "fixtures", "seed-howto.md"), encoding="utf-8") as fh:
        assert seed in fh.read()
    if os.path.exists("/etc/haproxy/haproxy.cfg"):
        with open("/etc/haproxy/haproxy.cfg", encoding="utf-8", newline="") as fh:
            live = fh.read()
        if "Managed by Salt" not in live:
            assert fixture("debian-default.cfg") == live


def test_the_large_fixture_is_a_valid_haproxy_config(tmp_path):
    r = haproxy_check(tmp_path, fixture("large.cfg"))
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------------------
# parsing and round trips


@pytest.mark.parametrize("name", REAL)
def test_real_configs_round_trip_byte_for_byte(name):
    text = fixture(name)
    assert hc.parse(text).render() == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "# only a comment\n",
        "global\n",
        "global",  # no final newline
        "global\n    maxconn 10",
        "global\r\n\tmaxconn 10\r\n\r\ndefaults\r\n\tmode http\r\n",  # CRLF
        "  # indented comment\n\n\tbackend   be_x   # trailing\n\tserver a 1.2.3.4:80\n\n\n",
        "listen x\n  bind :80\n#\n# -- title --\nlisten y\n  bind :81\n",
        "global\n  log stdout format raw local0 # '#' in a comment\n  description \"a # b\"\n",
        "frontend f\n    http-request deny if { path_beg \\#x }\n",
        "   \n\t\nglobal\n \n",
    ],
)
def test_odd_texts_round_trip(text):
    assert hc.parse(text).render() == text


def test_the_seed_parses_into_its_sections_with_titles_and_preamble():
    cfg = hc.parse(fixture("seed-primary.cfg"))
    assert cfg.labels() == [
        "listen haproxy_10.2.2.4_3306",
        "listen haproxy_10.2.2.44_3306",
        "listen haproxy_10.2.2.5_80",
        "listen haproxy_10.2.2.55_80",
        "userlist stats-auth",
        "listen stats",
    ]
    # text before the first section is the preamble
    assert cfg.preamble == ["# /usr/local/etc/haproxy.conf - Primary #\n", "# -- MYSQL --#\n"]
    # column-0 comments right above a header are that section's title
    assert cfg.find("listen", "haproxy_10.2.2.5_80").leading == ["#\n", "# -- HTTP -- #\n"]
    assert cfg.find("userlist", "stats-auth").leading == ["#\n", "#stats.cfg\n"]
    # a comment inside a section stays in it, the indented `#` too
    body = cfg.find("listen", "haproxy_10.2.2.4_3306").body
    assert "# This setup is to prevent locks in the database(s)\n" in body
    assert cfg.find("listen", "haproxy_10.2.2.5_80").body[-1] == "\t\t#\n"
    stats = cfg.find("listen", "stats")
    assert stats.directives()[0] == "bind 10.1.1.241:9000"  # the inline comment is not a word


def test_every_section_type_of_the_large_config():
    cfg = hc.parse(fixture("large.cfg"))
    types = {s.type for s in cfg.sections}
    assert types == {
        "global",
        "ring",
        "resolvers",
        "mailers",
        "peers",
        "program",
        "http-errors",
        "cache",
        "fcgi-app",
        "userlist",
        "defaults",
        "frontend",
        "backend",
        "listen",
    }
    assert ("defaults", "base") in cfg.keys() and ("defaults", "tcp-long") in cfg.keys()
    assert cfg.find("backend", "be_api").directives()[-1] == "server api3 127.0.0.23:8081 check disabled"


def test_debian_default_has_global_and_unnamed_defaults():
    cfg = hc.parse(fixture("debian-default.cfg"))
    assert cfg.keys() == [("global", ""), ("defaults", "")]
    assert "stats socket /run/haproxy/admin.sock mode 660 level admin" in cfg.find("global").directives()


@pytest.mark.parametrize(
    "line,expected",
    [
        ("\tbind 10.1.1.241:9000 #Management IP", ["bind", "10.1.1.241:9000"]),
        ("  tcp-check expect string is\\ running.", ["tcp-check", "expect", "string", "is\\ running."]),
        ('  http-request deny if { path_beg "/admin#" }   # not', ["http-request", "deny", "if", "{", "path_beg", '"/admin#"', "}"]),
        ("  description 'a # b' c", ["description", "'a # b'", "c"]),
        ("# all comment", []),
        ("   ", []),
        ("listen  haproxy_10.2.2.4_3306\r\n", ["listen", "haproxy_10.2.2.4_3306"]),
    ],
)
def test_words_follow_haproxys_quoting_and_comments(line, expected):
    assert hc.words(line) == expected


def test_headers_are_recognised_like_haproxy_does():
    assert hc.header_of("listen  haproxy_10.2.2.4_3306") == ("listen", "haproxy_10.2.2.4_3306")
    assert hc.header_of("   backend be   # indented still opens a section") == ("backend", "be")
    assert hc.header_of("defaults") == ("defaults", "")
    assert hc.header_of("defaults base from other") == ("defaults", "base")
    assert hc.header_of("defaults from other") == ("defaults", "")
    assert hc.header_of("# listen commented") is None
    assert hc.header_of("    use_backend be if x") is None
    assert hc.header_of("    http-request cache-use c") is None


# ---------------------------------------------------------------------------
# editing one section


def _edited(section: hc.Section) -> hc.Section:
    """The same section with one more directive (a comment line keeps the
    edit valid in every section type)."""
    lines = [line.strip() for line in section.body if not hc.is_blank(line)]
    return hc.make_section(section.type, section.name, [*lines, "# edited by the test"], header_extra=" ".join(section.header_words()[2:]))


@pytest.mark.parametrize("name", REAL)
def test_replacing_one_section_changes_only_its_lines(name):
    text = fixture(name)
    base = hc.parse(text)
    for i, section in enumerate(base.sections):
        if len(base._indexes(*section.key)) > 1:
            continue
        cfg = base.copy()
        assert cfg.replace(_edited(section)) is True
        after = cfg.render()
        touched = changed_line_numbers(text, after)
        assert touched, section.label
        assert touched <= set(line_span(base, section.key)), (section.label, touched)
        # every other section is byte for byte what it was
        for j, other in enumerate(cfg.sections):
            if j != i:
                assert other.text() == base.sections[j].text()
        assert hc.parse(after).render() == after


@pytest.mark.parametrize("name", REAL)
def test_replacing_a_section_by_itself_changes_nothing(name):
    text = fixture(name)
    cfg = hc.parse(text)
    for s in list(cfg.sections):
        if len(cfg._indexes(*s.key)) == 1:
            assert cfg.replace(copy.deepcopy(s)) is False
    assert cfg.render() == text


def test_replace_keeps_title_comments_separator_and_mends_the_final_newline():
    # HAProxy refuses a file whose last line has no newline ("Missing LF on
    # last line"): any edit ends the file with one
    text = "# pre\n\n# title\nlisten a\n\tbind :80\n\n\nlisten b\n\tbind :81"
    cfg = hc.parse(text)
    assert cfg.replace(hc.make_section("listen", "a", ["bind :8080"])) is True
    assert cfg.render() == "# pre\n\n# title\nlisten a\n    bind :8080\n\n\nlisten b\n\tbind :81\n"
    cfg.replace(hc.make_section("listen", "b", ["bind :8081", "mode http"]))
    assert cfg.render() == "# pre\n\n# title\nlisten a\n    bind :8080\n\n\nlisten b\n    bind :8081\n    mode http\n"


@pytest.mark.parametrize(
    "edit",
    [
        lambda cfg: cfg.replace(hc.make_section("listen", "b", ["bind :81"])),  # the same: only the newline
        lambda cfg: cfg.replace(hc.make_section("listen", "a", ["bind :8080"])),
        lambda cfg: cfg.remove("listen", "a"),
        lambda cfg: cfg.add(hc.make_section("listen", "c", ["bind :82"]), after=("listen", "a")),
        lambda cfg: cfg.add(hc.make_section("listen", "c", ["bind :82"])),
    ],
    ids=["replace-same-last", "replace-other", "remove-other", "add-in-the-middle", "add-at-the-end"],
)
def test_every_edit_of_a_file_without_final_newline_gives_one_haproxy_reads(edit):
    cfg = hc.parse("listen a\n\tbind :80\n\nlisten b\n\tbind :81")
    edit(cfg)
    out = cfg.render()
    assert out.endswith("\n") and not out.endswith("\n\n"), out
    assert hc.parse(out).labels() == cfg.labels()


def test_replace_keeps_crlf_line_endings():
    text = "global\r\n\tmaxconn 10\r\n\r\nlisten a\r\n\tbind :80\r\n"
    cfg = hc.parse(text)
    cfg.replace(hc.make_section("listen", "a", ["bind :81"]))
    assert cfg.render() == "global\r\n\tmaxconn 10\r\n\r\nlisten a\r\n    bind :81\r\n"


def test_add_and_remove_touch_only_their_lines():
    text = fixture("seed-primary.cfg")
    cfg = hc.parse(text)
    new = hc.make_section("listen", "haproxy_10.2.2.6_443", ["bind 10.2.2.6:443", "mode tcp", "server w1 10.6.6.9:443 check"])
    cfg.add(new, after=("listen", "haproxy_10.2.2.55_80"))
    after = cfg.render()
    assert "listen haproxy_10.2.2.6_443\n    bind 10.2.2.6:443\n" in after
    a, b = hc.split_lines(text), hc.split_lines(after)
    ops = [op for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if op[0] != "equal"]
    assert [op[0] for op in ops] == ["insert"]  # nothing replaced, nothing deleted
    assert cfg.remove("listen", "haproxy_10.2.2.6_443") is True
    assert cfg.render() == text
    assert cfg.remove("listen", "nope") is False


def test_remove_takes_the_title_comments_with_it():
    cfg = hc.parse(fixture("seed-primary.cfg"))
    cfg.remove("listen", "haproxy_10.2.2.5_80")
    out = cfg.render()
    assert "# -- HTTP -- #" not in out
    assert "haproxy_10.2.2.55_80" in out and "\tbalance source\n        server http_srv-3" in out


def test_add_at_the_end_of_a_file_without_final_newline():
    cfg = hc.parse("global\n\tmaxconn 10")
    cfg.add(hc.make_section("listen", "a", ["bind :80"]))
    assert cfg.render() == "global\n\tmaxconn 10\n\nlisten a\n    bind :80\n"
    cfg.remove("listen", "a")
    assert cfg.render() == "global\n\tmaxconn 10\n"


def test_add_before_and_errors():
    cfg = hc.parse("global\n\ndefaults\n\tmode tcp\n")
    cfg.add(hc.make_section("userlist", "u", ["user a password x"]), before=("defaults", ""))
    assert cfg.labels() == ["global", "userlist u", "defaults"]
    with pytest.raises(hc.ConfigError, match="already in the file"):
        cfg.add(hc.make_section("userlist", "u", []))
    with pytest.raises(hc.ConfigError, match="listen zz is not in the file"):
        cfg.add(hc.make_section("listen", "a", []), after=("listen", "zz"))
    with pytest.raises(hc.ConfigError, match="is not in the file"):
        cfg.replace(hc.make_section("backend", "b", []))


def test_a_duplicated_section_is_ambiguous():
    cfg = hc.parse(fixture("large.cfg"))
    with pytest.raises(hc.ConfigError, match="global is defined 2 times"):
        cfg.find("global")
    with pytest.raises(hc.ConfigError, match="defined 2 times"):
        cfg.replace(hc.make_section("global", "", ["maxconn 1"]))


@pytest.mark.parametrize(
    "args,match",
    [
        (("listn", "x", []), "not a HAProxy section type"),
        (("backend", "", []), "needs a name"),
        (("global", "x", []), "has no name"),
        (("backend", "a b", []), "not a valid section name"),
        (("backend", "a#b", []), "not a valid section name"),
        (("backend", "b", ["server a 1.2.3.4:80\nlisten evil"]), "one line"),
        (("backend", "b", ["listen evil"]), "would open a new section"),
    ],
)
def test_make_section_refuses_what_would_not_be_one_section(args, match):
    with pytest.raises(hc.ConfigError, match=match):
        hc.make_section(*args)


def test_edits_of_the_large_config_still_pass_haproxy_check(tmp_path):
    cfg = hc.parse(fixture("large.cfg"))
    be = cfg.find("backend", "be_app")
    lines = [x.strip() for x in be.body if x.strip()] + ["server app4 127.0.0.14:8080 check weight 10"]
    cfg.replace(hc.make_section("backend", "be_app", lines, indent="\t", header_extra="from base"))
    cfg.add(hc.make_section("backend", "be_new", ["server n1 127.0.0.61:80"], header_extra="from base"), after=("backend", "be_php"))
    cfg.remove("cache", "small-objects")
    api = cfg.find("backend", "be_api")
    cfg.replace(hc.make_section("backend", "be_api", [d for d in api.directives() if "cache" not in d], header_extra="from base"))
    r = haproxy_check(tmp_path, cfg.render())
    assert r.returncode == 0, r.stdout + r.stderr
    broken = cfg.copy()
    broken.replace(hc.make_section("backend", "be_new", ["server n1 127.0.0.61:80", "balance leastconnz"], header_extra="from base"))
    r = haproxy_check(tmp_path, broken.render(), "broken.cfg")
    assert r.returncode != 0 and "balance only supports" in r.stdout + r.stderr


# ---------------------------------------------------------------------------
# merge: a whole managed file


def rendered(model, node="lb-a", os_family="Debian"):
    return lb_render_haproxy.render_haproxy(model, lb_topology.find_node(model, node)[0], node, os_family)


def test_merge_onto_debians_default_gives_the_rendered_file(seed_model):
    desired = rendered(seed_model)
    res = hc.merge(hc.parse(fixture("debian-default.cfg")), hc.parse(desired), unmanaged="remove")
    assert res.text == desired
    assert res.changed == ["global", "defaults"]
    assert "listen stats" in res.added and res.removed == [] and res.kept == []


def test_merge_of_a_pillar_edit_changes_one_section_and_equals_the_render(seed_raw):
    v1 = rendered(lb_topology.load(copy.deepcopy(seed_raw)))
    raw = copy.deepcopy(seed_raw)
    pool = raw["pairs"]["edge"]["haproxy"]["pools"]["web_a"]
    pool["servers"]["http_srv-9"] = {"address": "10.6.6.9", "port": 80}
    v2 = rendered(lb_topology.load(raw))
    res = hc.merge(hc.parse(v1), hc.parse(v2), unmanaged="remove")
    assert res.text == v2
    assert res.changed == ["listen haproxy_10.2.2.5_80"] and res.added == [] and res.removed == []
    touched = changed_line_numbers(v1, v2)
    assert touched <= set(line_span(hc.parse(v1), ("listen", "haproxy_10.2.2.5_80")))
    # idempotent: merging again changes nothing
    again = hc.merge(hc.parse(res.text), hc.parse(v2), unmanaged="remove")
    assert again.text == res.text and again.changed == again.added == again.removed == []


@pytest.mark.parametrize("unmanaged", ["keep", "remove"])
def test_sections_the_pillar_does_not_own_are_kept_or_removed(seed_model, unmanaged):
    desired = rendered(seed_model)
    live = hc.parse(desired)
    live.add(hc.make_section("backend", "operator_extra", ["server x 10.6.6.99:80"]), after=("listen", "haproxy_10.2.2.44_3306"))
    live.add(hc.make_section("frontend", "operator_tail", ["bind 10.1.1.241:8080", "default_backend operator_extra"]))
    res = hc.merge(live, hc.parse(desired), unmanaged=unmanaged)
    if unmanaged == "remove":
        assert res.text == desired
        assert res.removed == ["backend operator_extra", "frontend operator_tail"]
    else:
        assert res.kept == ["backend operator_extra", "frontend operator_tail"]
        # kept in place: right after the managed section they followed
        assert res.config.labels().index("backend operator_extra") == res.config.labels().index("listen haproxy_10.2.2.44_3306") + 1
        assert res.config.labels()[-1] == "frontend operator_tail"
        assert res.changed == res.added == res.removed == []
        again = hc.merge(hc.parse(res.text), hc.parse(desired), unmanaged="keep")
        assert again.text == res.text


def test_merge_needs_an_explicit_choice_for_unmanaged_sections():
    with pytest.raises(hc.ConfigError, match="unmanaged must be one of keep, remove"):
        hc.merge(hc.parse(""), hc.parse("global\n"), unmanaged="yes")
    with pytest.raises(TypeError):
        hc.merge(hc.parse(""), hc.parse("global\n"))  # no default


def test_merge_follows_the_desired_order(seed_model):
    desired = hc.parse(rendered(seed_model))
    live = desired.copy()
    live.sections.reverse()
    res = hc.merge(live, desired, unmanaged="remove")
    assert res.text == desired.render()


def test_merge_refuses_a_desired_file_with_duplicate_sections():
    with pytest.raises(hc.ConfigError, match="listen a more than once"):
        hc.merge(hc.parse(""), hc.parse("listen a\n\nlisten a\n"), unmanaged="keep")


# ---------------------------------------------------------------------------
# secrets


def test_redaction_hides_password_hashes_and_stats_auth():
    text = fixture("seed-primary.cfg") + "listen s\n    stats auth admin:VerySecret1\n"
    red = hc.redact(text)
    assert "AdminPasswd" not in red and "VerySecret1" not in red
    assert "user  admin    insecure-password <redacted>\n" in red
    assert "stats auth admin:<redacted>" in red
    assert hc.parse(text).find("userlist", "stats-auth").secret() is True
    assert hc.parse(text).find("listen", "haproxy_10.2.2.4_3306").secret() is False


def test_diff_redacts_unless_asked(seed_model):
    v1 = rendered(seed_model)
    h = seed_model["pairs"]["edge"]["haproxy"]["userlists"]["stats-auth"]["users"]["admin"]["password_hash"]
    v2 = v1.replace(h, "$6$othersalt$" + "x" * 86)
    d = hc.diff(v1, v2, "/etc/haproxy/haproxy.cfg")
    assert h not in d and "othersalt" not in d
    assert d == ""  # only a secret changed: the diff has nothing to show
    assert h in hc.diff(v1, v2, secrets=True)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_reads_an_edited_file_that_had_no_final_newline(tmp_path):
    text = "defaults\n\tmode tcp\n\ttimeout connect 1s\n\ttimeout client 1s\n\ttimeout server 1s\n\nlisten a\n\tbind 127.0.0.1:65001"
    path = tmp_path / "h.cfg"

    def check():
        return subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, check=False)

    path.write_text(text)
    assert "Missing LF on last line" in check().stderr  # what HAProxy says of the file as it was
    cfg = hc.parse(text)
    cfg.replace(hc.make_section("defaults", "", ["mode tcp", "timeout connect 2s", "timeout client 1s", "timeout server 1s"]))
    path.write_text(cfg.render())
    assert check().returncode == 0, check().stderr


# ---------------------------------------------------------------------------
# the generation marker (which file the running HAProxy loaded)


@pytest.mark.parametrize("name", ["debian-default.cfg", "large.cfg"])
def test_stamp_is_idempotent_and_unstamp_gives_the_file_back(name):
    text = fixture(name)
    stamped = hc.stamp(text)
    assert stamped != text
    assert hc.stamp(stamped) == stamped
    assert hc.unstamp(stamped) == text
    assert hc.file_generation(stamped) == hc.marker(stamped) == hc.generation(text)
    # the marker is the last directive of global, nothing else moved
    g = [s for s in hc.parse(stamped).sections if s.type == "global"][-1]
    assert g.directives()[-1] == f"description lb-config-sha256={hc.generation(text)}"
    delta = [x for x in difflib.ndiff(hc.split_lines(text), hc.split_lines(stamped)) if x[:1] in "+-"]
    assert len(delta) == 1 and delta[0][:1] == "+"
    assert hc.words(delta[0][2:]) == ["description", f"lb-config-sha256={hc.generation(text)}"]


def test_a_file_without_global_gets_no_marker():
    text = fixture("seed-primary.cfg")  # the seed's file has no global section
    assert hc.stamp(text) == text and hc.file_generation(text) is None


def test_a_hand_edit_makes_the_marker_stale():
    stamped = hc.stamp(fixture("debian-default.cfg"))
    edited = stamped.replace("timeout connect", "timeout  connect", 1)
    assert hc.marker(edited) == hc.marker(stamped)
    assert hc.file_generation(edited) is None  # the marker no longer names this content
    assert hc.file_generation(hc.stamp(edited)) == hc.generation(edited)
    assert hc.file_generation(fixture("debian-default.cfg")) is None  # no marker at all
    assert hc.file_generation(None) is None


def test_a_description_of_the_operator_is_kept_and_the_marker_comes_last():
    text = "global\n    description our edge pair\n    daemon\n\nlisten x\n    bind 127.0.0.1:1\n"
    stamped = hc.stamp(text)
    assert hc.parse(stamped).find("global").directives() == [
        "description our edge pair",
        "daemon",
        f"description lb-config-sha256={hc.generation(text)}",
    ]


def test_loaded_generation_from_show_info():
    sha = "ab" * 32
    info = f"Name: HAProxy\nVersion: 2.6.12\nnode: vm\ndescription: lb-config-sha256={sha}\nPid: 12\n"
    assert hc.loaded_generation(info) == sha
    assert hc.loaded_generation("Name: HAProxy\nnode: vm\ndescription: \n") is None
    assert hc.loaded_generation(f"description: lb-config-sha256={sha}\\n\n") is None
    assert hc.loaded_generation("Name: HAProxy\n") is None


def test_haproxy_accepts_the_stamped_seed_config(tmp_path):
    if not (shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy")):
        pytest.skip("haproxy is not installed")
    r = haproxy_check(tmp_path, hc.stamp(fixture("debian-default.cfg")))
    assert r.returncode == 0, r.stdout + r.stderr
