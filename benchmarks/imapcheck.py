#!/usr/bin/env python3
"""imapcheck.py — snapshot an IMAP account and compare a copy with its original.

  benchmarks/imapcheck.py snapshot --port P [--host 127.0.0.1] --user U --password PW --out FILE [--counts-only]
      Lists every selectable mailbox and records, per message: SHA-256 of its bytes, SHA-256 with
      any X-TUID header line removed (the matching key; mbsync inserts that header), RFC822.SIZE,
      INTERNALDATE (as a UTC instant), flags and keywords (\\Recent dropped). With --counts-only,
      only STATUS MESSAGES per mailbox. Mailbox names are canonicalised: the personal namespace
      prefix (e.g. "INBOX.") is removed and the separator becomes "/"; modified UTF-7 is kept.

  benchmarks/imapcheck.py compare SRC.json DST.json [--label NAME]
      Prints per-folder counts and, if both snapshots have message details, how many messages
      arrived byte-identical, identical except for an added X-TUID header, with the same system
      flags, the same keywords and the same INTERNALDATE. The last line is
      "RESULT {json}". Exit status 0 iff every source folder has the same number of messages in
      the destination folder of the same canonical name and the totals agree.
"""

import argparse
import collections
import datetime as dt
import hashlib
import imaplib
import json
import re
import sys

SYSTEM_FLAGS = {"\\seen", "\\answered", "\\flagged", "\\draft", "\\deleted"}
LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?P<sep>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')
NS_RE = re.compile(rb'^\(\("((?:[^"\\]|\\.)*)" (?:"((?:[^"\\]|\\.)*)"|NIL)')
TUID_RE = re.compile(rb"(?im)^X-TUID: [^\r\n]*\r?\n")


def unquote(b):
    if b.startswith(b'"') and b.endswith(b'"'):
        return re.sub(rb'\\(.)', rb'\1', b[1:-1])
    return b


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check(typ, data, what):
    if typ != "OK":
        raise RuntimeError("%s failed: %s %r" % (what, typ, data))
    return data


def list_mailboxes(m):
    prefix, nsep = "", None
    try:  # Dovecot lists NAMESPACE only in the post-login capabilities
        typ, data = m.namespace()
    except imaplib.IMAP4.error:
        typ, data = "NO", None
    if typ == "OK" and data and data[0]:
        mt = NS_RE.match(data[0])
        if mt:
            prefix = mt.group(1).decode()
            nsep = mt.group(2).decode() if mt.group(2) is not None else None
    typ, data = m.list('""', "*")
    check(typ, data, "LIST")
    boxes = []
    i = 0
    while i < len(data):
        item = data[i]
        i += 1
        if item is None:
            continue
        if isinstance(item, tuple):  # name sent as a literal
            head, name = item[0], item[1]
            mt = LIST_RE.match(head.rsplit(b" ", 1)[0] + b" x")
            attrs, sep = mt.group("attrs"), unquote(mt.group("sep"))
        else:
            mt = LIST_RE.match(item)
            if not mt:
                continue
            attrs, sep, name = mt.group("attrs"), unquote(mt.group("sep")), unquote(mt.group("name"))
        attrs = attrs.lower().split()
        if b"\\noselect" in attrs or b"\\nonexistent" in attrs:
            continue
        name = name.decode("ascii", "replace")
        sep = sep.decode() if sep != b"NIL" else None
        boxes.append((name, canonical(name, prefix, sep or nsep)))
    return boxes


def canonical(name, prefix, sep):
    if name.upper() == "INBOX":
        return "INBOX"
    if prefix and name.startswith(prefix):
        name = name[len(prefix):]
    if sep and sep != "/":
        name = name.replace(sep, "/")
    return name


def parse_internaldate(s):
    return int(dt.datetime.strptime(s.strip(), "%d-%b-%Y %H:%M:%S %z").timestamp())


META_RE = {
    "uid": re.compile(rb"\bUID (\d+)"),
    "flags": re.compile(rb"\bFLAGS \(([^)]*)\)"),
    "date": re.compile(rb'\bINTERNALDATE "([^"]+)"'),
    "size": re.compile(rb"\bRFC822\.SIZE (\d+)"),
}


def fetch_details(m, uids_sizes):
    """Yield message records, fetching bodies in chunks of <= 24 MB."""
    chunk, chunk_bytes = [], 0
    chunks = []
    for uid, size in uids_sizes:
        if chunk and chunk_bytes + size > 24_000_000:
            chunks.append(chunk)
            chunk, chunk_bytes = [], 0
        chunk.append(uid)
        chunk_bytes += size
    if chunk:
        chunks.append(chunk)
    for ch in chunks:
        typ, data = m.uid("FETCH", ",".join(str(u) for u in ch), "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        check(typ, data, "UID FETCH")
        i = 0
        while i < len(data):
            item = data[i]
            i += 1
            if not isinstance(item, tuple):
                continue
            meta, body = item[0], item[1]
            if i < len(data) and isinstance(data[i], bytes):
                meta += data[i]  # items after the literal, if any
            rec = {}
            for k, rx in META_RE.items():
                mt = rx.search(meta)
                if not mt:
                    raise RuntimeError("FETCH response without %s: %r" % (k, meta[:200]))
                rec[k] = mt.group(1)
            flags = [f for f in rec["flags"].decode().split() if f.lower() != "\\recent"]
            head, sepr, rest = body.partition(b"\r\n\r\n")
            stripped = TUID_RE.sub(b"", head + b"\r\n") + sepr + rest
            yield {
                "key": hashlib.sha256(stripped).hexdigest()[:32],
                "sha": hashlib.sha256(body).hexdigest()[:32],
                "size": int(rec["size"]),
                "date": parse_internaldate(rec["date"].decode()),
                "sys": sorted(f.lower() for f in flags if f.lower() in SYSTEM_FLAGS),
                "kw": sorted(f for f in flags if f.lower() not in SYSTEM_FLAGS),
                "tuid": stripped != body,
            }


def snapshot(args):
    m = imaplib.IMAP4(args.host, args.port)
    check(*m.login(args.user, args.password), "LOGIN")
    out = {"user": args.user, "folders": {}}
    for name, canon in list_mailboxes(m):
        if args.counts_only:
            typ, data = m.status(quote(name), "(MESSAGES)")
            check(typ, data, "STATUS " + name)
            n = int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
            out["folders"][canon] = {"name": name, "messages": n}
            continue
        typ, data = m.select(quote(name), readonly=True)
        check(typ, data, "EXAMINE " + name)
        n = int(data[0])
        msgs = []
        if n:
            typ, data = m.uid("FETCH", "1:*", "(RFC822.SIZE)")
            check(typ, data, "UID FETCH sizes")
            us = []
            for line in data:
                if isinstance(line, bytes):
                    u, s = META_RE["uid"].search(line), META_RE["size"].search(line)
                    if u and s:
                        us.append((int(u.group(1)), int(s.group(1))))
            msgs = list(fetch_details(m, us))
        m.close()
        out["folders"][canon] = {"name": name, "messages": len(msgs), "details": msgs}
    m.logout()
    with open(args.out, "w") as f:
        json.dump(out, f)
    total = sum(v["messages"] for v in out["folders"].values())
    size = sum(r["size"] for v in out["folders"].values() for r in v.get("details", []))
    print(json.dumps({"messages": total, "bytes": size, "folders": len(out["folders"])}))


def compare(args):
    src = json.load(open(args.src))["folders"]
    dst = json.load(open(args.dst))["folders"]
    label = args.label or args.dst
    ok = True
    lines = []
    res = collections.Counter()
    for canon, s in sorted(src.items()):
        d = dst.get(canon)
        sn = s["messages"]
        dn = d["messages"] if d else None
        res["src_messages"] += sn
        if sn == 0 and not d:
            continue
        if dn != sn:
            ok = False
            lines.append("  MISMATCH %-24s source %5d  destination %s" % (canon, sn, "missing" if d is None else dn))
        else:
            lines.append("  ok       %-24s %5d" % (canon, sn))
        if d and "details" in s and "details" in d:
            by_key = collections.defaultdict(list)
            for r in d["details"]:
                by_key[r["key"]].append(r)
            for r in s["details"]:
                cand = by_key.get(r["key"])
                if not cand:
                    res["missing"] += 1
                    continue
                x = cand.pop()
                res["matched"] += 1
                res["identical_bytes"] += x["sha"] == r["sha"]
                res["differs_only_by_x_tuid"] += x["sha"] != r["sha"] and x["tuid"]
                res["same_flags"] += x["sys"] == r["sys"]
                res["same_keywords"] += x["kw"] == r["kw"]
                res["same_internaldate"] += x["date"] == r["date"]
                res["src_with_keywords"] += bool(r["kw"])
            res["extra"] += sum(len(v) for v in by_key.values())
    dst_total = sum(v["messages"] for v in dst.values())
    extra_folders = sorted(c for c, v in dst.items() if c not in src and v["messages"])
    if extra_folders:
        lines.append("  extra destination folders with messages: %s" % ", ".join(extra_folders))
    res["dst_messages"] = dst_total
    if dst_total != res["src_messages"]:
        ok = False
    res["verified"] = ok
    print("%s: destination %d / source %d messages — %s" % (label, dst_total, res["src_messages"],
                                                          "OK" if ok else "MISMATCH"))
    print("\n".join(lines))
    if res["matched"]:
        print("  fidelity: %(matched)d matched by content, %(identical_bytes)d byte-identical, "
              "%(differs_only_by_x_tuid)d differ only by an added X-TUID header, %(same_flags)d same system flags, "
              "%(same_keywords)d same keywords (%(src_with_keywords)d source messages have keywords), "
              "%(same_internaldate)d same INTERNALDATE, %(missing)d missing, %(extra)d extra" % res)
    print("RESULT " + json.dumps(dict(res)))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snapshot")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--user", required=True)
    s.add_argument("--password", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--counts-only", action="store_true")
    c = sub.add_parser("compare")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--label")
    args = ap.parse_args()
    if args.cmd == "snapshot":
        snapshot(args)
        return 0
    return compare(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, RuntimeError, imaplib.IMAP4.error) as e:
        print("imapcheck.py: error: %s" % e, file=sys.stderr)
        sys.exit(2)
