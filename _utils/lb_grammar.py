"""The grammar of every string this product writes into a config language or
a shell, in one place.

Pure Python (re only).  Each ``Rule`` is a full-match check (``re.fullmatch``:
a trailing newline never slips through the way ``re.match`` + ``$`` lets it)
with the words an error message uses for it.  The pillar checks
(``lb_topology``), the per-minion settings (``lb_settings``) and the renderers'
quoting (``lb_routing``, ``lb_render``, ``lb_probe``) all use these, so what
is accepted is exactly what each target language reads back as the same
value.

One rule per target language:

- HAProxy: names, keywords, and free arguments.  HAProxy splits a line into
  words at spaces, takes ``#`` outside quotes as the start of a comment,
  reads ``\\`` escapes and ``"..."`` / ``'...'`` quotes; arguments are
  accepted only when every ``#`` is escaped or quoted, every quote is closed
  and no escape needs a hex code.  CR, LF and NUL are never accepted.
- keepalived: words without spaces, quotes, ``#`` or ``!`` (its comments).
- BIRD 2: a string is ``"..."`` with no escape at all (``"`` and line breaks
  cannot be written inside one), so ``"`` and ``\\`` are refused; protocol
  names are symbols, and BIRD's keywords cannot be symbols.
- OpenBGPD / OpenOSPFD (``parse.y``): ``"..."`` strings in which ``#`` and
  ``$`` are literal; outside quotes ``#`` starts a comment and ``$`` a macro,
  so every free string is written quoted (``bgpd_string``).  ``descr`` holds
  at most 31 bytes (``descr "..." too long: max 31``).
- xinetd / inetd: fields are words (names, absolute paths, addresses).
- rc.conf: an sh double-quoted value: no ``"``, ``\\``, ``$`` or backquote.
- sh: absolute paths of binaries and directories, ``/`` then
  ``[A-Za-z0-9_./+-]`` only: nothing the shell expands, splits or runs.
"""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """A named full-match check; ``what`` completes "must be ...".

    ``problem(value)`` is None when the value is fine, else the reason, in
    words that name what was expected."""

    name: str
    pattern: re.Pattern
    what: str
    max_len: int | None = None

    def ok(self, value) -> bool:
        return self.problem(value) is None

    def problem(self, value) -> str | None:
        if not isinstance(value, str):
            return f"must be a non-empty string ({self.what}), got {value!r}"
        if not value:
            return f"'' is not {self.what}"
        if any(c in value for c in "\r\n\0"):
            return f"{value!r} holds a line break (CR or LF) or NUL; it must be {self.what}"
        if self.max_len is not None and len(value.encode()) > self.max_len:
            return f"{value!r} is {len(value.encode())} bytes, more than {self.max_len}; it must be {self.what}"
        if self.pattern.fullmatch(value) is None:
            return f"{value!r} is not {self.what}"
        return None

    def fullmatch(self, value):
        """``re.Pattern.fullmatch``, for callers that want the match."""
        return self.pattern.fullmatch(value) if isinstance(value, str) else None


def _rule(name: str, pattern: str, what: str, max_len: int | None = None) -> Rule:
    return Rule(name, re.compile(pattern), what, max_len)


class GrammarError(ValueError):
    """A string that its target language cannot hold as given."""


def require(rule: Rule, value, where: str = "") -> str:
    """``value`` if ``rule`` accepts it, else GrammarError naming ``where``."""
    problem = rule.problem(value)
    if problem is not None:
        raise GrammarError(f"{where}: {problem}" if where else problem)
    return value


# ---------------------------------------------------------------------------
# HAProxy

# one argument: plain characters (printable, not space " # ' \), a backslash
# escape (not \x, whose hex digits HAProxy checks), or a quoted string
_HAP_PLAIN = r"[\x21\x24-\x26\x28-\x5b\x5d-\x7e]"
_HAP_ESC = r"\\[\x20-\x77\x79-\x7e]"
# in double quotes HAProxy expands $VAR / ${VAR} from its environment: no
# '$' there (single quotes, or an unquoted $, are literal)
_HAP_DQ = r'"(?:[\x20\x21\x23\x25-\x5b\x5d-\x7e]|' + _HAP_ESC + r')*"'
_HAP_SQ = r"'[\x20-\x26\x28-\x7e]*'"
_HAP_WORD = rf"(?:{_HAP_PLAIN}|{_HAP_ESC}|{_HAP_DQ}|{_HAP_SQ})+"
_HAP_ARGS = rf"{_HAP_WORD}(?: +{_HAP_WORD})*"
_HAP_ARGS_WHAT = (
    "HAProxy arguments on one line (printable ASCII; '#' only escaped as \\# or quoted; quotes closed; no '$' in double quotes)"
)

HAPROXY_NAME = _rule(
    "haproxy_name", r"[A-Za-z0-9][A-Za-z0-9_.:-]*", "a HAProxy name (a letter or digit, then letters, digits, '_', '.', ':', '-')"
)
# names as the runtime API (stats socket) gets them: any HAProxy identifier
HAPROXY_RUNTIME_NAME = _rule(
    "haproxy_runtime_name", r"[A-Za-z0-9_.:-]+", "a HAProxy proxy or server name (letters, digits, '_', '.', ':', '-')"
)
HAPROXY_KEYWORD = _rule("haproxy_keyword", r"[a-z][a-z0-9.-]*", "a HAProxy keyword (lower-case letters, digits, '.', '-')")
HAPROXY_ARGS = _rule("haproxy_args", _HAP_ARGS, _HAP_ARGS_WHAT)
HAPROXY_OPTION = _rule(
    "haproxy_option", rf"[a-z][a-z0-9-]*(?: {_HAP_ARGS})?", "an option (like socket-stats or httplog) with " + _HAP_ARGS_WHAT
)
HAPROXY_BALANCE = _rule(
    "haproxy_balance",
    r"(?:roundrobin|static-rr|leastconn|first|source|random(?:\(\d+\))?|uri(?: @A)?|url_param @W(?: @A)?"
    r"|hdr\([A-Za-z0-9_-]+\)(?: @A)?|rdp-cookie(?:\([A-Za-z0-9_-]+\))?|hash @W(?: @A)?)".replace("@W", _HAP_WORD).replace("@A", _HAP_ARGS),
    "a balance algorithm HAProxy knows (roundrobin, static-rr, leastconn, first, source, uri, url_param, hdr(name), random, rdp-cookie, hash)",
)
HAPROXY_TIME = _rule("haproxy_time", r"\d+(?:us|ms|s|m|h|d)?", "a HAProxy time (a number with an optional unit: us, ms, s, m, h, d)")
HAPROXY_URI = _rule(
    "haproxy_uri", r"/[\x21\x24-\x26\x28-\x5b\x5d-\x7e]*", "an absolute path (printable ASCII without spaces, quotes, '#' or '\\')"
)
HAPROXY_TCP_EXPECT = _rule(
    "haproxy_tcp_expect",
    rf"(?:! ?)?(?:string|rstring|binary|rbinary) +{_HAP_ARGS}",
    "a tcp-check expect rule (string|rstring|binary|rbinary <pattern>; '#' escaped as \\#)",
)
HAPROXY_SERVER_WORD = _rule("haproxy_server_word", r"[A-Za-z0-9_.,-]+", "a word of letters, digits, '_', '.', ',', '-'")

# Userlist passwords: SHA-crypt only (glibc/libxcrypt and FreeBSD crypt(3)).
# HAProxy runs crypt() for every Basic-auth request, inside its event loop
# (no cache): every other connection of that thread waits meanwhile.  The
# rounds are bounded: 5000 is glibc's default (what `mkpasswd -m sha-512`
# makes, ~1.4 ms of SHA-512 here), 10000 at most (~3 ms); 50000 would be
# ~20 ms per login attempt, which anyone who can reach the stats page could
# repeat.  glibc raises anything below 1000 to 1000.
SHA_CRYPT_MIN_ROUNDS = 1000
SHA_CRYPT_MAX_ROUNDS = 10000
SHA_CRYPT = _rule(
    "sha_crypt",
    r"\$(?:5|6)\$(?:rounds=(?P<rounds>[1-9]\d{0,8})\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43,86}",
    "a SHA-crypt hash ($5$... or $6$...); make one with `mkpasswd -m sha-512`",
)


def password_hash_problem(value) -> str | None:
    """None for a SHA-crypt hash HAProxy can check cheaply, else the reason."""
    problem = SHA_CRYPT.problem(value)
    if problem is not None:
        return problem
    rounds = SHA_CRYPT.fullmatch(value).group("rounds")
    if rounds is not None and not SHA_CRYPT_MIN_ROUNDS <= int(rounds) <= SHA_CRYPT_MAX_ROUNDS:
        return (
            f"has rounds={rounds}; use {SHA_CRYPT_MIN_ROUNDS}-{SHA_CRYPT_MAX_ROUNDS} (HAProxy runs crypt() in its event loop "
            f"on every login: mkpasswd -m sha-512 without -R makes the default 5000)"
        )
    return None


# ---------------------------------------------------------------------------
# names shared by several files (interfaces, hosts, sysctl, routes)

HOSTNAME = _rule(
    "hostname",
    r"(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*",
    "a host name (labels of letters, digits, '_', '-', separated by '.')",
)
DEVICE = _rule("device", r"[A-Za-z][A-Za-z0-9_.-]{0,14}", "a valid interface name (letters, digits, '.', '_', '-'; at most 15)")
SYSCTL_NAME = _rule("sysctl_name", r"[a-z0-9_]+(?:\.[A-Za-z0-9_-]+)+", "a sysctl name (like net.inet.ip.forwarding)")
_SYSCTL_WORD = r"[A-Za-z0-9_.,:/+-]+"
SYSCTL_VALUE = _rule(
    "sysctl_value", rf"{_SYSCTL_WORD}(?: {_SYSCTL_WORD})*", "a sysctl value (words of letters, digits, '_', '.', ',', ':', '/', '+', '-')"
)
ROUTE_NAME = _rule("route_name", r"[A-Za-z0-9_]+", "a route name (letters, digits and '_': FreeBSD's static_routes list)")
COMMUNITY = _rule("community", r"\d{1,10}:\d{1,10}", "a community ASN:VALUE")
IPV4 = _rule("ipv4", r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)", "an IPv4 address")

# ---------------------------------------------------------------------------
# keepalived

KEEPALIVED_WORD = _rule("keepalived_word", r"[A-Za-z0-9_./:@+,=-]+", "a keepalived word (no spaces, quotes, '#' or '!')")

# ---------------------------------------------------------------------------
# BIRD 2

# inside "...": anything printable but " (BIRD has no escape) and \
_QUOTABLE = r"[\x20\x21\x23-\x5b\x5d-\x7e]"
BIRD_STRING = _rule("bird_string", rf"{_QUOTABLE}*", "a BIRD string (printable ASCII without '\"' or '\\')")
# Words BIRD 2.0.12 (Debian 12) reserves: a protocol cannot be named so
# (`protocol bgp <keyword>` is a syntax error; keywords are case-sensitive).
# Made by trying every word of /usr/sbin/bird's strings (and every suffix:
# the linker shares string tails) as a protocol name with `bird -p`;
# tests/unit/test_grammar.py repeats the sweep against the installed BIRD.
# Plus the symbols the rendered bird.conf defines itself.
BIRD_RESERVED = frozenset(
    """
    AF_IPV4 AF_IPV6 NET_FLOW4 NET_FLOW6 NET_IP4 NET_IP6 NET_IP6_SADR NET_ROA4 NET_ROA6 NET_VPN4 NET_VPN6 ORIGIN_EGP
    ORIGIN_IGP ORIGIN_INCOMPLETE RA_PREF_HIGH RA_PREF_LOW RA_PREF_MEDIUM ROA_INVALID ROA_UNKNOWN ROA_VALID
    RTD_BLACKHOLE RTD_PROHIBIT RTD_UNICAST RTD_UNREACHABLE RTS_BABEL RTS_BGP RTS_DEVICE RTS_INHERIT RTS_OSPF
    RTS_OSPF_EXT1 RTS_OSPF_EXT2 RTS_OSPF_IA RTS_PIPE RTS_REDIRECT RTS_RIP RTS_STATIC RTS_STATIC_DEVICE SCOPE_HOST
    SCOPE_LINK SCOPE_ORGANIZATION SCOPE_SITE SCOPE_UNDEFINED SCOPE_UNIVERSE accept action add address administrative
    advertise after aigp algorithm all allow always area as as4 asn attribute attributes auth authentication
    autonomous aware babel babel_metric base bcast bfd bgp bgp_aggregator bgp_aigp bgp_atomic_aggr bgp_cluster_list
    bgp_community bgp_ext_community bgp_large_community bgp_local_pref bgp_med bgp_next_hop bgp_origin
    bgp_originator_id bgp_otc bgp_path bgpmask bgppath bind bird blackhole blake2b256 blake2b512 blake2s128
    blake2s256 block bool broadcast bt_assert bt_check_assign bt_test_same bt_test_suite buffer bug by capabilities
    case cease change channels check circuit class client clist cluster code collision commands communities
    confederation config configuration configure confirm connect connection contains cost cost2 count cryptographic
    current data data1 data2 dead debug deconfigured default define defined delay delete demand description dest
    deterministic dev device digits direct disable disabled dnssl do domain dont_fragment down dport drop dscp dst
    dump dynamic ebgp ec echo eclist ecmp eligible else empty enable enforce entries error eval events exit exp
    expire export exported extended external false fatal filename filter filtered filters first first_fragment flags
    flow4 flow6 flush for forget format fragment free from function garbage gateway gc generate generic global
    graceful gw gw_mpls header hello help hidden high hit hmac hold hop horizon hostname ibgp icmp id idle if
    ifindex ifname ignore igp igp_metric import in infinity info instance int interface interfaces internal
    interpret interval ip ipv4 ipv4_mc ipv4_mpls ipv6 ipv6_mc ipv6_mpls ipv6_sadr is_fragment is_v4 is_v6 iso keep
    keepalive kernel key keyed krt_advmss krt_cwnd krt_feature_allfrag krt_feature_ecn krt_hoplimit krt_initcwnd
    krt_initrwnd krt_lock_advmss krt_lock_cwnd krt_lock_hoplimit krt_lock_mtu krt_lock_reordering krt_lock_rto_min
    krt_lock_rtt krt_lock_rttvar krt_lock_sstresh krt_lock_window krt_metric krt_mtu krt_prefsrc krt_quickack
    krt_realm krt_reordering krt_rto_min krt_rtt krt_rttvar krt_scope krt_source krt_sstresh krt_window label large
    last last_fragment last_nonaggregated latency lc lclist learn len length lifetime limit linger link lived lladdr
    local log long low lsa lsadb lsid mac managed mandatory mask master4 master6 match max maxlen md5 med medium
    member memory merge messages meticulous metric min missing mode mpls mrt mrtdump ms mtu mult multicast multihop
    multiplier name nbma neighbor neighbors net netlink netmask networks next ng no noexport nonbroadcast none
    normal ns nssa of off offset older on onlink only originate ospf ospf_metric1 ospf_metric2 ospf_router_id
    ospf_tag other out packets pair passive password passwords path paths pe perf period permissive persist pipe
    plaintext pointomultipoint pointopoint poison poll port preexport prefer preference preferred prefix prepend pri
    primary print printn priority private prohibit propagate proto protocol protocols ptmp ptp public quad quit ra
    ra_lifetime ra_preference radv randomize range rd rdnss reachable real receive recursive refresh reject rejected
    reload remote repeat require reset resources restart restrict retrans retransmit retry return reverse
    rfc1583compat rfc5838 rip rip_metric rip_tag ro roa4 roa6 roa_check roles route router routes rpki rr rs rt rx
    rxcost s sadr scan scope sec secondary security self sensitive sessions set setkey sets settle sha1 sha256
    sha384 sha512 short show shutdown simple skip sockets soft solicited sorted source split sport src ssh stability
    stale start startup state states static stats status stderr strict string stub stubnet summary suppression
    symbols syslog table tag tcp template then threshold tick time timeformat timeout timer to topology trace
    translator transmit transport trie trigger true ttl tx type undo unicast unknown unreachable unset update us
    user v2 v3 valid validate version via virtual vpn vpn4 vpn4_mc vpn4_mpls vpn6 vpn6_mc vpn6_mpls vrf wait warn
    warning watchdog weight where wired wireless yes zero
    """.split()
) | frozenset({"lb_vips", "lb_ospf", "LB_VIPS"})
BIRD_AUTO_NAME = re.compile(r"(?:device|kernel|direct|static|bfd|ospf|bgp|pipe|rip|babel|radv|rpki|mrt|perf|l3vpn|aggregator)\d+")
BIRD_SYMBOL = _rule("bird_symbol", r"[A-Za-z_][A-Za-z0-9_]*", "a BIRD symbol (a letter or '_', then letters, digits, '_')")


def bird_symbol(name: str) -> str:
    """The BIRD protocol name of a pillar name: letters, digits and '_'
    kept, anything else '_', an initial digit prefixed with ``nb_``."""
    clean = "".join(ch if (ch.isascii() and ch.isalnum()) or ch == "_" else "_" for ch in name)
    return clean if clean[:1].isalpha() else f"nb_{clean}"


def bird_symbol_problem(name: str) -> str | None:
    """None when ``bird_symbol(name)`` can name a BIRD protocol."""
    sym = bird_symbol(name)
    if sym in BIRD_RESERVED or BIRD_AUTO_NAME.fullmatch(sym):
        return f"{name!r} is a word BIRD reserves (a keyword or a name bird.conf already uses); name the neighbor otherwise (like ebgp1)"
    return None


def bird_string(value: str) -> str:
    """``"value"`` for bird.conf, or GrammarError."""
    return '"' + require(BIRD_STRING, value) + '"'


# ---------------------------------------------------------------------------
# OpenBGPD / OpenOSPFD

# refused inside quotes: " and \ (escapes differ from BIRD's, which has none)
BGPD_STRING = _rule("bgpd_string", rf"{_QUOTABLE}*", "an OpenBGPD string (printable ASCII without '\"' or '\\')")
# a neighbor's descr goes to bgpd.conf and bird.conf: both grammars, and
# OpenBGPD's 31-byte limit
BGP_DESCR = _rule("bgp_descr", rf"{_QUOTABLE}+", "a description of at most 31 characters, printable ASCII without '\"' or '\\'", max_len=31)
# TCP MD5 key (RFC 2385, at most 80 bytes): quoted in both files, so '#' and
# '$' are the key's own characters; no spaces, '"' or '\'.
MD5SIG = _rule("md5sig", r"[\x21\x23-\x5b\x5d-\x7e]+", "1-80 printable characters without spaces, '\"' or '\\' (a TCP MD5 key)", max_len=80)
# a neighbor's pillar name: its BIRD protocol name and the default descr
BGP_NEIGHBOR_NAME = _rule(
    "bgp_neighbor", r"[A-Za-z][A-Za-z0-9_-]{0,30}", "a neighbor name (a letter, then letters, digits, '_', '-'; at most 31)"
)


def bgpd_string(value: str) -> str:
    """``"value"`` for bgpd.conf / ospfd.conf, or GrammarError."""
    return '"' + require(BGPD_STRING, value) + '"'


# ---------------------------------------------------------------------------
# sh, rc.conf, xinetd / inetd, package managers, MySQL option files

SH_PATH = _rule("sh_path", r"/[A-Za-z0-9_./+-]*", "an absolute path of [A-Za-z0-9_./+-]")
SH_PATH_LIST = _rule(
    "sh_path_list", r"/[A-Za-z0-9_./+-]*(?::/[A-Za-z0-9_./+-]*)*", "a PATH list: absolute paths of [A-Za-z0-9_./+-] separated by ':'"
)
UNIX_NAME = _rule(
    "unix_name", r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", "a user or group name (a letter or '_', then letters, digits, '_', '.', '-'; at most 32)"
)
PACKAGE_NAME = _rule(
    "package_name", r"[A-Za-z0-9][A-Za-z0-9_+.-]*(?:/[A-Za-z0-9][A-Za-z0-9_+.-]*)?", "a package name (letters, digits, '_', '+', '.', '-')"
)
RC_CONF_VALUE = _rule("rc_conf_value", r'[^"\\$`\x00-\x1f\x7f]*', "an rc.conf value (no '\"', '\\', '$', backquote or control character)")
MYSQL_OPTION_VALUE = _rule("mysql_option_value", r"[^'\\\x00-\x1f\x7f]+", "an option-file value without ', \\ or control characters")


def rc_conf(key: str, value: str) -> str:
    """``key="value"`` for rc.conf, or GrammarError."""
    require(_rule("rc_conf_key", r"[A-Za-z_][A-Za-z0-9_]*", "an rc.conf variable name"), key)
    return f'{key}="{require(RC_CONF_VALUE, value, key)}"'
