# benchmarks/lib.sh — what benchmarks/bulk-run and benchmarks/nodes-run share: the two Dovecots, the
# corpus of N source accounts, one batch through the API with its GET latency, and the check of every
# destination mailbox. Sourced, not run; the caller sets ROOT, BENCH, SERVER, WORK, PW, MASTER_USER,
# MASTER_PW, MAILBOXES and MESSAGES, and has `log` and `set -euo pipefail`.

# free_ports N: N free loopback ports on one line
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
}

# start_dovecots SRC_PORT SRC_TLS DST_PORT DST_TLS: source (dot layout) and destination (slash, master user)
start_dovecots() {
    log "starting Dovecots in $WORK (source :$1 dot layout, destination :$3 slash layout with a master user)"
    "$SERVER" start "$WORK/src" --imap-port "$1" --imaps-port "$2" --layout dot \
        --any-user-password "$PW" >/dev/null
    "$SERVER" start "$WORK/dst" --imap-port "$3" --imaps-port "$4" --layout slash \
        --any-user-password "$PW" --master "$MASTER_USER:$MASTER_PW" >/dev/null
}

# Sources are u001@old.example …; destinations PREFIXnnn@example.org.
user() { if [[ $1 == u ]]; then printf 'u%03d@old.example' "$2"; else printf '%s%03d' "$1" "$2"; fi; }

# fill_sources SRC_PORT: MAILBOXES source accounts of MESSAGES small messages over three folders
fill_sources() {
    log "filling $MAILBOXES source accounts with $MESSAGES messages each"
    for i in $(seq 1 "$MAILBOXES"); do
        python3 "$BENCH/make-bulk.py" --port "$1" --user "$(user u "$i")" --password "$PW" \
            --small "$MESSAGES" --folders INBOX,INBOX.Archive,INBOX.Work --seed "$i" >/dev/null
    done
}

# verify PREFIX: every destination PREFIXnnn against source unnn, counts per folder; prints how many match
# (uses SRC_PORT and DST_PORT)
verify() {
    local prefix=$1 ok=0
    for i in $(seq 1 "$MAILBOXES"); do
        [[ -f $WORK/src-$i.json ]] || python3 "$BENCH/imapcheck.py" snapshot --counts-only --port "$SRC_PORT" \
            --user "$(user u "$i")" --password "$PW" --out "$WORK/src-$i.json" >/dev/null
        python3 "$BENCH/imapcheck.py" snapshot --counts-only --port "$DST_PORT" --user "$(user "$prefix" "$i")@example.org" \
            --password "$PW" --out "$WORK/$prefix-$i.json" >/dev/null
        if python3 "$BENCH/imapcheck.py" compare "$WORK/src-$i.json" "$WORK/$prefix-$i.json" \
            --label "$prefix $i" >"$WORK/$prefix-$i.compare" 2>&1; then
            ok=$((ok + 1))
        fi
    done
    echo "$ok"
}

seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}'; }
rss_mb() { awk -F': ' '/Maximum resident set size/{printf "%.0f", $2/1024}' "$1"; }

# run_batch API_PORT TOKEN PREFIX OUT: adds the mailboxes PREFIX001… through the API, starts one batch
# copying unnn into PREFIXnnn, polls GET /migrations/bulk/{id} every 50 ms until it ends, and writes
# wall time, status, imported messages and the GET latencies (p50, p99, max; from the request's start to the
# response's last byte, on a new connection each, as curl would) to OUT as JSON
run_batch() {
    python3 - "$1" "$2" "$MAILBOXES" "$PW" "$SRC_PORT" "$4" "$3" <<'EOF'
import json, sys, time, urllib.request
port, token, count, pw, src_port, out, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
base = f"http://127.0.0.1:{port}/api/v1"
def fetch(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.read()
call = lambda method, path, body=None: json.loads(fetch(method, path, body))
emails = [f"{prefix}{i:03d}@example.org" for i in range(1, count + 1)]
call("POST", "/mailboxes", {"emails": emails})
csv = "\n".join(f"u{i:03d}@old.example,{pw},{prefix}{i:03d}@example.org" for i in range(1, count + 1))
start = time.monotonic()
batch = call("POST", "/migrations/bulk", {"data": csv, "source_host": "127.0.0.1", "source_port": int(src_port),
                                          "source_security": "none", "name": "benchmark"})["data"]
latencies = []
while True:
    # A request's latency ends with its last byte: parsing 90 KB of JSON in Python is the client's.
    t = time.monotonic()
    body = fetch("GET", f"/migrations/bulk/{batch['id']}")
    latencies.append((time.monotonic() - t) * 1000)
    data = json.loads(body)["data"]
    if data["status"] in ("completed", "completed_with_errors", "cancelled"):
        break
    time.sleep(0.05)
wall = time.monotonic() - start
latencies.sort()
q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))]
json.dump({"wall": wall, "status": data["status"], "imported": data["imported_messages"], "gets": len(latencies),
           "p50": q(0.50), "p99": q(0.99), "max": latencies[-1]}, open(out, "w"))
EOF
}
