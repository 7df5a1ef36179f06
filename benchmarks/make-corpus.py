#!/usr/bin/env python3
"""make-corpus.py — fill an IMAP account with a deterministic benchmark corpus.

Usage:
  benchmarks/make-corpus.py --port P [--host 127.0.0.1] --user U --password PW
                            [--messages 3000] [--megabytes 160] [--folders 8] [--seed 1]

Appends over plaintext IMAP (LOGIN, then pipelined APPENDs with LITERAL+ when the server
offers it, synchronizing literals otherwise) into a fresh account on a server with the
"." separator and personal prefix "INBOX." (scripts/dovecot-test-server --layout dot).
The same parameters always produce byte-identical messages, flags and internal dates.

The corpus:
  * folders (default 8): INBOX, INBOX.Sent, INBOX.Archive, INBOX.Work, INBOX.Work.Projects,
    INBOX.Lists.swift-dev (its parent INBOX.Lists is a \\Noselect placeholder),
    INBOX.B&APw-ro ("Büro", modified UTF-7), INBOX.Old Mail.2016 (space, nested);
    more folders are named "INBOX.Folder NN"; fewer take the first N of that list.
  * sizes: ~0.4 % of the messages (at least one if the budget allows) are 1-10 MB
    multipart/mixed with a base64 attachment, the rest 5-60 KB (text/plain, some UTF-8 8bit,
    multipart/alternative text+html, multipart/mixed with a small attachment); the small ones
    are scaled so the total is close to --megabytes (MB = 1,000,000 bytes).
  * flags: \\Seen ~75 % (all in Sent), \\Answered ~12 %, \\Flagged ~6 %,
    keywords $Forwarded ~5 %, project-x ~3 %, $Label1 ~2 %; never \\Deleted or \\Draft.
  * INTERNALDATE spread uniformly over 2015-01-01 .. 2025-01-01 with assorted UTC offsets;
    the Date: header is 0-300 s earlier in the same offset; Date headers are unique.
  * ~5 % of the messages have no Message-ID header.

Prints a summary (messages, bytes, per folder) at the end; exits non-zero on any failure.
"""

import argparse
import base64
import datetime as dt
import hashlib
import random
import socket
import sys
import time

MB = 1_000_000
CRLF = b"\r\n"

BASE_FOLDERS = [
    # (name in Unicode, with "." as separator, weight)
    ("INBOX", 35),
    ("INBOX.Sent", 15),
    ("INBOX.Archive", 8),
    ("INBOX.Work", 10),
    ("INBOX.Work.Projects", 8),
    ("INBOX.Lists.swift-dev", 12),
    ("INBOX.Büro", 6),
    ("INBOX.Old Mail.2016", 6),
]

TZ_OFFSETS = [0, 60, 60, 120, -300, -240, -480, 330, 540, 600, -180]  # minutes

FIRST_NAMES = ["Anna", "Ben", "Chloé", "David", "Elif", "Frank", "Greta", "Hiro", "Ines", "Jonas",
               "Kai", "Lena", "Mateo", "Nina", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tomás",
               "Uma", "Viktor", "Wen", "Xavier", "Yuki", "Zoë"]
LAST_NAMES = ["Müller", "Schmidt", "Dubois", "Rossi", "García", "Smith", "Nakamura", "Kowalski",
              "Nguyen", "Johansson", "Papadopoulos", "O'Brien", "Silva", "Novak", "Haddad"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.de", "corp.example.fr",
           "lists.example.org", "university.example.edu"]
UTF8_WORDS = ["Grüße", "Größe", "naïve", "façade", "smörgåsbord", "Ärger", "über", "crème",
              "déjà", "Zürich", "日本語", "テスト", "Привет", "Ελλάδα", "😀"]


def mutf7_encode(name):
    """Modified UTF-7 (RFC 3501 §5.1.3)."""
    out = []
    run = []

    def flush():
        if run:
            b = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode("ascii").rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        o = ord(ch)
        if 0x20 <= o <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def folder_list(n):
    folders = list(BASE_FOLDERS[:n])
    for i in range(len(folders), n):
        folders.append(("INBOX.Folder %02d" % (i + 1), 5))
    return folders


def make_vocab(rng):
    syll = ["ka", "to", "ri", "men", "sa", "lo", "ver", "in", "dus", "pel", "ta", "ne", "bro", "qui",
            "ex", "ar", "mo", "sen", "lu", "ga", "pre", "con", "ti", "al", "or", "ste", "ple", "vi"]
    words = set()
    while len(words) < 3000:
        words.add("".join(rng.choice(syll) for _ in range(rng.randint(1, 4))))
    words = sorted(words)
    rng.shuffle(words)
    return words


def make_text_pool(rng, vocab, size):
    """A CRLF-wrapped ASCII text blob of about `size` bytes (lines <= 76 chars)."""
    words = rng.choices(vocab, k=size // 5)
    lines = []
    cur = []
    cur_len = 0
    for i, w in enumerate(words):
        if i % 97 == 0 and i:
            w = w.capitalize() + "."
        if cur_len + len(w) + 1 > 72:
            lines.append(" ".join(cur))
            cur, cur_len = [], 0
            if rng.random() < 0.12:
                lines.append("")
        cur.append(w)
        cur_len += len(w) + 1
    lines.append(" ".join(cur))
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


class Corpus:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        vocab = make_vocab(self.rng)
        self.vocab = vocab
        pool = make_text_pool(self.rng, vocab, 1_200_000)
        self.pool = pool + pool  # wrap-around slicing
        self.pool_len = len(pool)
        self.used_dates = set()

    def text(self, size):
        """ASCII text of about `size` bytes ending in CRLF, taken from the pool."""
        size = max(size, 2)
        out = []
        while size > 0:
            chunk = min(size, self.pool_len - 200)
            start = self.rng.randrange(self.pool_len)
            nl = self.pool.find(CRLF, start)
            start = nl + 2
            piece = self.pool[start:start + chunk]
            cut = piece.rfind(CRLF)
            piece = piece[:cut + 2] if cut >= 0 else piece.rstrip(b"\r") + CRLF
            out.append(piece)
            size -= len(piece)
        return b"".join(out)

    def person(self):
        r = self.rng
        first, last = r.choice(FIRST_NAMES), r.choice(LAST_NAMES)
        addr = "%s.%s@%s" % (first.lower(), last.lower().replace("'", ""), r.choice(DOMAINS))
        addr = addr.encode("ascii", "ignore").decode()  # strip accents roughly
        addr = "".join(c for c in addr if c.isascii())
        name = "%s %s" % (first, last)
        if name.isascii():
            return '"%s" <%s>' % (name, addr) if "'" in name else "%s <%s>" % (name, addr)
        enc = base64.b64encode(name.encode("utf-8")).decode()
        return "=?UTF-8?B?%s?= <%s>" % (enc, addr)

    def subject(self):
        r = self.rng
        words = " ".join(r.choice(self.vocab) for _ in range(r.randint(2, 8)))
        prefix = r.choice(["", "", "", "Re: ", "Re: ", "Fwd: ", "AW: ", "[swift-dev] "])
        if r.random() < 0.15:
            s = prefix + words + " " + r.choice(UTF8_WORDS)
            return "=?UTF-8?B?%s?=" % base64.b64encode(s.encode("utf-8")).decode()
        return (prefix + words).capitalize() if not prefix else prefix + words

    def unique_instant(self, start, span_s):
        while True:
            t = start + self.rng.randrange(span_s)
            if t not in self.used_dates:
                self.used_dates.add(t)
                return t


def fmt_internaldate(t_utc, off_min):
    tz = dt.timezone(dt.timedelta(minutes=off_min))
    d = dt.datetime.fromtimestamp(t_utc, tz)
    sign = "+" if off_min >= 0 else "-"
    a = abs(off_min)
    return "%02d-%s-%04d %02d:%02d:%02d %s%02d%02d" % (
        d.day, ("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())[d.month - 1], d.year,
        d.hour, d.minute, d.second, sign, a // 60, a % 60)


def fmt_rfc5322_date(t_utc, off_min):
    tz = dt.timezone(dt.timedelta(minutes=off_min))
    d = dt.datetime.fromtimestamp(t_utc, tz)
    sign = "+" if off_min >= 0 else "-"
    a = abs(off_min)
    return "%s, %d %s %04d %02d:%02d:%02d %s%02d%02d" % (
        "Mon Tue Wed Thu Fri Sat Sun".split()[d.weekday()], d.day,
        "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()[d.month - 1], d.year,
        d.hour, d.minute, d.second, sign, a // 60, a % 60)


def b64_lines(data):
    return base64.encodebytes(data).replace(b"\n", CRLF)


def build_message(c, idx, target_size, large, folder, t_utc, off_min):
    r = c.rng
    date_hdr = fmt_rfc5322_date(t_utc - r.randrange(301), off_min)
    me = "Alex Example <alex@example.com>"
    if folder.endswith(".Sent"):
        frm, to = me, c.person()
    else:
        frm, to = c.person(), me
    hdr = []
    hdr.append("Return-Path: <%s>" % frm.split("<")[-1].rstrip(">"))
    hdr.append("Received: from mx%d.%s (mx%d.%s [192.0.2.%d])\r\n\tby mail.example.com with ESMTPS id %08x;\r\n\t%s"
               % (r.randrange(9), r.choice(DOMAINS), r.randrange(9), r.choice(DOMAINS), r.randrange(1, 255),
                  r.getrandbits(32), date_hdr))
    hdr.append("Date: " + date_hdr)
    hdr.append("From: " + frm)
    hdr.append("To: " + to)
    if r.random() < 0.25:
        hdr.append("Cc: " + ", ".join(c.person() for _ in range(r.randint(1, 3))))
    hdr.append("Subject: " + c.subject())
    if r.random() >= 0.05:
        hdr.append("Message-ID: <%s.%d@%s>" % (hashlib.sha1(b"%d-%d" % (idx, t_utc)).hexdigest()[:20], idx,
                                               r.choice(DOMAINS)))
    if r.random() < 0.3:
        ref = "<%s@%s>" % ("%016x" % r.getrandbits(64), r.choice(DOMAINS))
        hdr.append("In-Reply-To: " + ref)
        hdr.append("References: " + ref)
    if folder.endswith("swift-dev"):
        hdr.append("List-Id: Swift development <swift-dev.lists.example.org>")
    hdr.append("MIME-Version: 1.0")
    head_len = sum(len(h) + 2 for h in hdr) + 200

    boundary = "----=_Part_%d_%08x" % (idx, r.getrandbits(32))
    kind = "large" if large else r.choices(["plain", "utf8", "alt", "mixed"], [55, 15, 18, 12])[0]
    body_budget = max(target_size - head_len, 300)
    if kind == "plain" or kind == "utf8":
        if kind == "utf8":
            hdr.append("Content-Type: text/plain; charset=utf-8")
            hdr.append("Content-Transfer-Encoding: 8bit")
            extra = (" ".join(r.choice(UTF8_WORDS) for _ in range(12)) + "\r\n").encode("utf-8")
            body = extra + c.text(body_budget - len(extra))
        else:
            hdr.append("Content-Type: text/plain; charset=us-ascii")
            hdr.append("Content-Transfer-Encoding: 7bit")
            body = c.text(body_budget)
    elif kind == "alt":
        hdr.append('Content-Type: multipart/alternative; boundary="%s"' % boundary)
        txt = c.text(body_budget * 2 // 5)
        html_inner = c.text(body_budget * 3 // 5 - 120)
        html = b"<html><body><p>\r\n" + html_inner.replace(b"\r\n\r\n", b"\r\n</p><p>\r\n") + b"</p></body></html>\r\n"
        body = b"".join([
            b"This is a multi-part message in MIME format.\r\n\r\n",
            b"--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" % boundary.encode(), txt,
            b"\r\n--%s\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n" % boundary.encode(), html,
            b"\r\n--%s--\r\n" % boundary.encode()])
    else:  # mixed / large: text + base64 attachment
        hdr.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
        txt = c.text(min(2000 + r.randrange(4000), body_budget // 3))
        att_b64_budget = max(body_budget - len(txt) - 400, 100)
        raw_len = att_b64_budget * 57 // 78
        name, ctype = r.choice([("report.pdf", "application/pdf"), ("photo.jpg", "image/jpeg"),
                                ("slides.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
                                ("data.zip", "application/zip"), ("scan.png", "image/png")])
        if large:
            name = "large-" + name
        att = b64_lines(r.randbytes(raw_len))
        body = b"".join([
            b"This is a multi-part message in MIME format.\r\n\r\n",
            b"--%s\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
            % boundary.encode(), txt,
            b"\r\n--%s\r\nContent-Type: %s; name=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"%s\"\r\n\r\n"
            % (boundary.encode(), ctype.encode(), name.encode(), name.encode()), att,
            b"\r\n--%s--\r\n" % boundary.encode()])
    head = ("\r\n".join(hdr) + "\r\n\r\n").encode("utf-8")
    return head + body


def plan_sizes(rng, n, total):
    """Per-message target sizes: mostly 5-60 KB, a few 1-10 MB, summing to ~total."""
    n_large = max(1, round(n * 0.004)) if total >= n * 5_000 + 1 * MB else 0
    n_large = min(n_large, n)
    small = [int(5_000 * (12 ** rng.random())) for _ in range(n - n_large)]  # log-uniform 5-60 KB
    small_sum = sum(small)
    remaining = total - small_sum
    large = []
    if n_large:
        # fit the remainder into the large ones (1-10 MB each), adding/removing large ones as needed
        while n_large > 1 and remaining / n_large < 1.2 * MB:
            n_large -= 1
            s = int(5_000 * (12 ** rng.random()))
            small.append(s)
            remaining -= s
        while remaining / n_large > 9 * MB and len(small) > 1:
            remaining += small.pop()
            n_large += 1
        weights = [0.3 + rng.random() for _ in range(n_large)]
        wsum = sum(weights)
        large = [min(10 * MB, max(1 * MB, int(remaining * w / wsum))) for w in weights]
    # scale the small ones so the grand total lands near the target
    rest = total - sum(large)
    if small:
        f = rest / sum(small)
        f = min(max(f, 0.2), 5.0)
        small = [max(1_500, int(s * f)) for s in small]
    sizes = [(s, False) for s in small] + [(s, True) for s in large]
    rng.shuffle(sizes)
    return sizes


class IMAP:
    def __init__(self, host, port, timeout=120):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb", buffering=1 << 16)
        self.n = 0
        greeting = self.rf.readline()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError("unexpected greeting: %r" % greeting)
        self.caps = set()

    def tag(self):
        self.n += 1
        return b"c%d" % self.n

    def read_tagged(self, tag):
        while True:
            line = self.rf.readline()
            if not line:
                raise RuntimeError("connection closed by server")
            if line.startswith(b"* CAPABILITY ") or b"[CAPABILITY " in line:
                s = line.split(b"CAPABILITY ", 1)[1].split(b"]")[0]
                self.caps = set(s.strip().upper().split())
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].startswith(b"OK"):
                    raise RuntimeError("%s failed: %r" % (tag.decode(), line))
                return line

    def simple(self, cmd):
        t = self.tag()
        self.sock.sendall(t + b" " + cmd + CRLF)
        return self.read_tagged(t)

    @staticmethod
    def quote(s):
        return b'"' + s.encode("ascii").replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--megabytes", type=float, default=160, help="total size target, MB = 10^6 bytes")
    ap.add_argument("--folders", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch-bytes", type=int, default=8 * MB, help="pipelined APPEND bytes per batch")
    args = ap.parse_args()
    if args.messages < 1 or args.folders < 1 or args.megabytes <= 0:
        ap.error("--messages, --folders and --megabytes must be positive")

    t0 = time.monotonic()
    c = Corpus(args.seed)
    r = c.rng
    folders = folder_list(args.folders)
    sizes = plan_sizes(r, args.messages, int(args.megabytes * MB))
    names = [f for f, _ in folders]
    weights = [w for _, w in folders]
    assign = r.choices(range(len(names)), weights, k=args.messages)
    # every folder gets at least one message when possible
    for i in range(min(len(names), args.messages)):
        assign[i] = i
    start = int(dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    span = int(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).timestamp()) - start

    imap = IMAP(args.host, args.port)
    imap.simple(b"LOGIN " + IMAP.quote(args.user) + b" " + IMAP.quote(args.password))
    imap.simple(b"CAPABILITY")
    literal_plus = b"LITERAL+" in imap.caps
    encoded = {f: mutf7_encode(f) for f in names}
    for f in names:
        if f == "INBOX":
            continue
        t = imap.tag()
        imap.sock.sendall(t + b" CREATE " + IMAP.quote(encoded[f]) + CRLF)
        try:
            imap.read_tagged(t)
        except RuntimeError as e:  # special-use folders (Sent, Archive) already exist
            if b"ALREADYEXISTS" not in str(e).encode() and "exists" not in str(e).lower():
                raise
        imap.simple(b"SUBSCRIBE " + IMAP.quote(encoded[f]))

    total_bytes = 0
    per_folder = {f: [0, 0] for f in names}
    flag_counts = {}
    no_msgid = 0
    large_count = 0
    pending = []
    pending_bytes = 0

    def flush():
        nonlocal pending, pending_bytes
        for t in pending:
            imap.read_tagged(t)
        pending, pending_bytes = [], 0

    for idx in range(args.messages):
        size, large = sizes[idx]
        folder = names[assign[idx]]
        t_utc = c.unique_instant(start, span)
        off = r.choice(TZ_OFFSETS)
        msg = build_message(c, idx, size, large, folder, t_utc, off)
        flags = []
        if folder.endswith(".Sent") or r.random() < 0.75:
            flags.append("\\Seen")
        if r.random() < 0.12:
            flags.append("\\Answered")
        if r.random() < 0.06:
            flags.append("\\Flagged")
        if r.random() < 0.05:
            flags.append("$Forwarded")
        if r.random() < 0.03:
            flags.append("project-x")
        if r.random() < 0.02:
            flags.append("$Label1")
        for fl in flags:
            flag_counts[fl] = flag_counts.get(fl, 0) + 1
        if b"\r\nMessage-ID: " not in msg.split(b"\r\n\r\n", 1)[0]:
            no_msgid += 1
        large_count += large
        cmd = b" APPEND " + IMAP.quote(encoded[folder]) + b" (" + " ".join(flags).encode() + b") " + \
            IMAP.quote(fmt_internaldate(t_utc, off))
        t = imap.tag()
        if literal_plus:
            imap.sock.sendall(t + cmd + b" {%d+}\r\n" % len(msg))
            imap.sock.sendall(msg + CRLF)
            pending.append(t)
            pending_bytes += len(msg)
            if pending_bytes >= args.batch_bytes or len(pending) >= 256:
                flush()
        else:
            imap.sock.sendall(t + cmd + b" {%d}\r\n" % len(msg))
            line = imap.rf.readline()
            if not line.startswith(b"+"):
                raise RuntimeError("APPEND refused: %r" % line)
            imap.sock.sendall(msg + CRLF)
            imap.read_tagged(t)
        total_bytes += len(msg)
        per_folder[folder][0] += 1
        per_folder[folder][1] += len(msg)
    flush()
    imap.simple(b"LOGOUT")
    elapsed = time.monotonic() - t0

    print("corpus: %d messages, %d bytes (%.1f MB) in %d folders, %d large (1-10 MB), %d without Message-ID; "
          "generated and appended in %.1f s (%s)"
          % (args.messages, total_bytes, total_bytes / MB, len(names), large_count, no_msgid, elapsed,
             "LITERAL+ pipelined" if literal_plus else "synchronizing literals"))
    for f in names:
        print("  %-28s %-26s %5d msgs %8.1f MB" % (f, encoded[f], per_folder[f][0], per_folder[f][1] / MB))
    print("  flags: " + ", ".join("%s %d" % (k, v) for k, v in sorted(flag_counts.items())))


if __name__ == "__main__":
    try:
        main()
    except (OSError, RuntimeError) as e:
        print("make-corpus.py: error: %s" % e, file=sys.stderr)
        sys.exit(1)
