#!/usr/bin/env python3
"""make-bulk.py — fill an IMAP account fast with many small messages and/or one large one.

Usage:
  benchmarks/make-bulk.py --port P [--host 127.0.0.1] --user U --password PW
                          [--small N] [--small-bytes 2000] [--folders INBOX,INBOX.Archive,INBOX.Work]
                          [--large-mb M] [--large-folder INBOX] [--mode multiappend|pipelined]
                          [--batch 500] [--seed 1]

  --small N        N small text/plain messages (--small-bytes +-25 %, default ~2 KB each), spread over
                   --folders (weights 40/35/25 % for three folders, equal otherwise), appended over one
                   connection per folder in parallel
  --large-mb M     additionally one multipart/mixed message of M MB (10^6 bytes) with a base64
                   attachment, appended to --large-folder (a MB-sized literal in one APPEND)
  --mode           multiappend (default): RFC 3502 MULTIAPPEND, --batch messages per APPEND command
                   (one transaction each), LITERAL+ literals, up to 4 commands in flight;
                   pipelined: one APPEND per message, LITERAL+, up to --batch commands in flight

Folder names use the server's own separator and prefix (e.g. INBOX.Archive on
`scripts/dovecot-test-server --layout dot`) and must be ASCII; missing ones are created.
Every message has a unique Message-ID, Subject and Date; \\Seen on ~75 %, \\Flagged on ~5 %;
INTERNALDATE spread over 2015-2024. The same arguments always give the same bytes.
Needs LITERAL+ (and MULTIAPPEND for --mode multiappend), as Dovecot offers.

Prints per-folder counts, then one line `RESULT {"messages": .., "bytes": .., "seconds": ..}`.
"""

import argparse
import base64
import json
import random
import socket
import sys
import threading
import time

CRLF = b"\r\n"
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
DAYS = "Mon Tue Wed Thu Fri Sat Sun".split()
T2015 = 1420070400
SPAN = 315532800  # 2015-01-01 .. 2025-01-01


def fmt_dates(t):
    """(INTERNALDATE string, RFC 5322 Date) for UTC instant t."""
    tm = time.gmtime(t)
    idate = "%02d-%s-%04d %02d:%02d:%02d +0000" % (tm.tm_mday, MONTHS[tm.tm_mon - 1], tm.tm_year,
                                                     tm.tm_hour, tm.tm_min, tm.tm_sec)
    d = "%s, %d %s %04d %02d:%02d:%02d +0000" % (DAYS[tm.tm_wday], tm.tm_mday, MONTHS[tm.tm_mon - 1],
                                                tm.tm_year, tm.tm_hour, tm.tm_min, tm.tm_sec)
    return idate, d


def text_pool(rng, size):
    syll = ["ka", "to", "ri", "men", "sa", "lo", "ver", "in", "dus", "pel", "ta", "ne", "bro", "qui",
            "ex", "ar", "mo", "sen", "lu", "ga", "pre", "con", "ti", "al", "or", "ste", "ple", "vi"]
    words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(2000)]
    lines, cur = [], []
    n = 0
    while n < size:
        w = rng.choice(words)
        if sum(len(x) + 1 for x in cur) + len(w) > 72:
            line = " ".join(cur)
            lines.append(line)
            n += len(line) + 2
            cur = []
        cur.append(w)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


class Conn:
    def __init__(self, host, port, user, password):
        self.sock = socket.create_connection((host, port), timeout=600)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rf = self.sock.makefile("rb", buffering=1 << 16)
        self.n = 0
        self.caps = set()
        line = self.rf.readline()
        if not line.startswith(b"* OK"):
            raise RuntimeError("unexpected greeting %r" % line)
        self.command(b"LOGIN " + quote(user) + b" " + quote(password))
        self.command(b"CAPABILITY")

    def send(self, cmd_and_data):
        self.n += 1
        tag = b"b%d" % self.n
        self.sock.sendall(tag + b" " + cmd_and_data)
        return tag

    def wait(self, tag, ok_codes=(b"OK",)):
        while True:
            line = self.rf.readline()
            if not line:
                raise RuntimeError("connection closed by the server")
            if line.startswith(b"* CAPABILITY ") or b"[CAPABILITY " in line:
                self.caps = set(line.split(b"CAPABILITY ", 1)[1].split(b"]")[0].strip().upper().split())
            if line.startswith(tag + b" "):
                status = line[len(tag) + 1:]
                if not any(status.startswith(c) for c in ok_codes):
                    raise RuntimeError("%s: %r" % (tag.decode(), line.strip()))
                return status

    def command(self, cmd, ok_codes=(b"OK",)):
        return self.wait(self.send(cmd + CRLF), ok_codes)

    def close(self):
        try:
            self.command(b"LOGOUT")
        finally:
            self.sock.close()


def quote(s):
    if isinstance(s, str):
        s = s.encode("ascii")
    return b'"' + s.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def small_message(pool, rng, seed, folder, i, t, size):
    idate, date = fmt_dates(t)
    head = ("Date: %s\r\nFrom: Sender %d <sender%d@example.org>\r\nTo: Alex Example <alex@example.com>\r\n"
            "Subject: Bulk message %d in %s\r\nMessage-ID: <bulk-%d-%s-%d@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n"
            % (date, i % 997, i % 997, i, folder, seed, folder, i)).encode("ascii")
    want = max(size - len(head), 80)
    start = pool.find(CRLF, rng.randrange(len(pool) - want - 200)) + 2
    body = pool[start:start + want]
    cut = body.rfind(CRLF)
    body = body[:cut + 2] if cut > 0 else body + CRLF
    flags = []
    if rng.random() < 0.75:
        flags.append("\\Seen")
    if rng.random() < 0.05:
        flags.append("\\Flagged")
    return head + body, " ".join(flags), idate


def large_message(rng, seed, size):
    t = T2015 + rng.randrange(SPAN)
    _, date = fmt_dates(t)
    boundary = "----=_Large_%d_%08x" % (seed, rng.getrandbits(32))
    head = ("Date: %s\r\nFrom: Big Sender <big@example.org>\r\nTo: Alex Example <alex@example.com>\r\n"
            "Subject: A %.0f MB attachment\r\nMessage-ID: <large-%d@example.org>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n" % (date, size / 1e6, seed, boundary)).encode()
    text = b"This is a multi-part message in MIME format.\r\n\r\n--" + boundary.encode() + \
        b"\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe attachment is random data.\r\n\r\n--" + \
        boundary.encode() + b"\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n" \
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n\r\n"
    tail = b"\r\n--" + boundary.encode() + b"--\r\n"
    b64_budget = size - len(head) - len(text) - len(tail)
    raw = rng.randbytes(b64_budget // 78 * 57)  # 76 chars + CRLF per 57 raw bytes
    att = base64.encodebytes(raw).replace(b"\n", CRLF)
    msg = head + text + att + tail
    return msg, "\\Seen", fmt_dates(t)[0]


def fill_folder(args, folder, indices, seed_base, out, errors):
    try:
        rng = random.Random("%d-%s" % (seed_base, folder))
        pool = text_pool(random.Random(seed_base), 300_000)
        c = Conn(args.host, args.port, args.user, args.password)
        if args.mode == "multiappend" and b"MULTIAPPEND" not in c.caps:
            raise RuntimeError("server lacks MULTIAPPEND (use --mode pipelined)")
        if b"LITERAL+" not in c.caps:
            raise RuntimeError("server lacks LITERAL+")
        box = quote(folder)
        nbytes = 0
        inflight = []
        window = 4 if args.mode == "multiappend" else args.batch
        lo = args.small_bytes * 3 // 4
        hi = args.small_bytes * 5 // 4
        step = args.batch if args.mode == "multiappend" else 1
        for k in range(0, len(indices), step):
            parts = []
            for i in indices[k:k + step]:
                t = T2015 + (i * 7919 + seed_base * 104729) % SPAN
                msg, flags, idate = small_message(pool, rng, seed_base, folder, i, t, rng.randint(lo, hi))
                parts.append(b" (" + flags.encode() + b") \"" + idate.encode() + b"\" {%d+}\r\n" % len(msg) + msg)
                nbytes += len(msg)
            inflight.append(c.send(b"APPEND " + box + b"".join(parts) + CRLF))
            if len(inflight) >= window:
                c.wait(inflight.pop(0))
        for t in inflight:
            c.wait(t)
        c.close()
        out[folder] = (len(indices), nbytes)
    except Exception as e:  # reported by the main thread
        errors.append("%s: %s" % (folder, e))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--small", type=int, default=0)
    ap.add_argument("--small-bytes", type=int, default=2000)
    ap.add_argument("--folders", default="INBOX,INBOX.Archive,INBOX.Work")
    ap.add_argument("--large-mb", type=float, default=0)
    ap.add_argument("--large-folder", default="INBOX")
    ap.add_argument("--mode", choices=["multiappend", "pipelined"], default="multiappend")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.small < 0 or args.large_mb < 0 or args.batch < 1 or args.small_bytes < 300:
        ap.error("bad sizes")

    t0 = time.monotonic()
    folders = [f.strip() for f in args.folders.split(",") if f.strip()]
    c = Conn(args.host, args.port, args.user, args.password)
    for f in set(folders + ([args.large_folder] if args.large_mb else [])):
        if f.upper() == "INBOX":
            continue
        c.command(b"CREATE " + quote(f), ok_codes=(b"OK", b"NO"))  # NO: exists already
        c.command(b"SUBSCRIBE " + quote(f))
    per_folder = {}
    total_msgs = total_bytes = 0
    if args.large_mb:
        msg, flags, idate = large_message(random.Random(args.seed), args.seed, int(args.large_mb * 1e6))
        c.sock.sendall(b"L APPEND " + quote(args.large_folder) + b" (" + flags.encode() + b") \"" +
                       idate.encode() + b"\" {%d+}\r\n" % len(msg))
        c.sock.sendall(msg + CRLF)
        c.wait(b"L")
        per_folder[args.large_folder] = [1, len(msg)]
        total_msgs, total_bytes = 1, len(msg)
    c.close()

    if args.small:
        weights = [40, 35, 25] if len(folders) == 3 else [1] * len(folders)
        rng = random.Random(args.seed)
        assign = {f: [] for f in folders}
        for i in range(args.small):
            assign[rng.choices(folders, weights)[0]].append(i)
        out, errors = {}, []
        threads = [threading.Thread(target=fill_folder, args=(args, f, assign[f], args.seed, out, errors))
                   for f in folders if assign[f]]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise RuntimeError("; ".join(errors))
        for f, (n, b) in out.items():
            pf = per_folder.setdefault(f, [0, 0])
            pf[0] += n
            pf[1] += b
            total_msgs += n
            total_bytes += b
    elapsed = time.monotonic() - t0
    for f, (n, b) in sorted(per_folder.items()):
        print("  %-24s %7d msgs %9.1f MB" % (f, n, b / 1e6))
    print("RESULT " + json.dumps({"messages": total_msgs, "bytes": total_bytes, "seconds": round(elapsed, 2),
                                  "mode": args.mode}))


if __name__ == "__main__":
    try:
        main()
    except (OSError, RuntimeError) as e:
        print("make-bulk.py: error: %s" % e, file=sys.stderr)
        sys.exit(1)
