#!/usr/bin/env bash
# report.sh R1 - r1 report on a small pretrain + GRPO run (tests/recipes/report/grpo.yaml,
# a few seconds): the page parses with balanced tags, loads nothing from the network, has
# exactly one chart per metric key and stage of metrics.jsonl (every key drawn once), one
# ledger row per commit, the last sample completion HTML-escaped; the default output path;
# bad input exits 2 and leaves nothing behind; with chromium installed, it renders to a PNG.
set -u
r1=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run=$tmp/run
fail=0
check() { # expected-status description command...
  local want=$1 what=$2; shift 2
  "$@" >"$tmp/out" 2>&1; local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, want $want"; sed 's/^/    /' "$tmp/out"; fail=1
  else
    echo "ok: $what"
  fi
}

"$r1" run "$here/recipes/report/grpo.yaml" --run-dir "$run" >"$tmp/run.log" 2>&1 ||
  { echo "FAIL: run: $(tail -3 "$tmp/run.log")"; exit 1; }

check 0 "report -o FILE" "$r1" report "$run" -o "$tmp/out.html"
commits=$(git -C "$run" log --oneline | wc -l)
if COMMITS=$commits RUN=$run python3 - "$tmp/out.html" <<'EOF'; then echo "ok: report content"; else fail=1; fi
import html, json, os, sys
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}

class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.charts, self.commits = [], [], [], 0
        self.remote, self.text, self.scripts = [], [], 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href"):
            v = a.get(k) or ""
            if v.lower().startswith(("http://", "https://", "//")):
                self.remote.append(v)
        if tag == "script":
            self.scripts += 1
        if tag == "svg" and "data-metric" in a:
            self.charts.append((a.get("data-stage"), a["data-metric"], a.get("data-series", "")))
        if tag == "tr" and a.get("class") == "commit":
            self.commits += 1
        if tag not in VOID:
            self.stack.append(tag)
    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()
    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("</%s> closes <%s>" % (tag, self.stack[-1] if self.stack else "nothing"))
        else:
            self.stack.pop()
    def handle_data(self, data):
        self.text.append(data)

raw = open(sys.argv[1], encoding="utf-8").read()
p = Page()
p.feed(raw)
p.close()
bad = []
if p.errors or p.stack:
    bad.append("unbalanced tags: %s, left open %s" % (p.errors[:3], p.stack))
if p.remote or p.scripts:
    bad.append("loads from the network or runs scripts: %s, %d scripts" % (p.remote, p.scripts))

# expected: every numeric key but step of each stage's metrics lines
want = {}
for line in open(os.path.join(os.environ["RUN"], "metrics.jsonl")):
    o = json.loads(line)
    keys = want.setdefault(o["stage"], set())
    keys.update(k for k, v in o.items() if k not in ("stage", "step") and not isinstance(v, str))
got, metrics = {}, set()
for stage, metric, series in p.charts:
    if (stage, metric) in metrics:
        bad.append("two charts for %s %s" % (stage, metric))
    metrics.add((stage, metric))
    for k in series.split():
        if k in got.setdefault(stage, set()):
            bad.append("%s %s drawn twice" % (stage, k))
        got[stage].add(k)
if got != want:
    bad.append("charts %s, want %s" % (got, want))
for stage, key in (("rl", "reward"), ("rl", "eval/accuracy"), ("pretrain", "loss")):
    if (stage, key) not in metrics:
        bad.append("no %s chart for stage %s" % (key, stage))
if ("rl", "reward") in metrics and not any(
        s == "rl" and m == "reward" and "rewards/accuracy" in ser.split() for s, m, ser in p.charts):
    bad.append("rewards/accuracy is not drawn with reward")

if p.commits != int(os.environ["COMMITS"]):
    bad.append("%d ledger rows, want %s" % (p.commits, os.environ["COMMITS"]))

# the newest sample's completion, escaped in the file and whole in the parsed text
last = json.loads(open(os.path.join(os.environ["RUN"], "samples", "rl.jsonl")).readlines()[-1])
c = last["completion"]
text = "".join(p.text)
clean = "".join(ch if (ch >= " " or ch in "\n\t") and ch != "\x7f" else "\ufffd" for ch in c)
if clean not in text:
    bad.append("the last completion %r is not in the page's text" % c)
if "<think>" in c and "&lt;think&gt;" not in raw:
    bad.append("the last completion's <think> is not HTML-escaped in the file")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
EOF

# default output path, and a second report replaces the first
check 0 "report DIR writes DIR/report.html" "$r1" report "$run"
[ -s "$run/report.html" ] || { echo "FAIL: no $run/report.html"; fail=1; }
check 0 "report DIR again" "$r1" report "$run"
ls "$run" | grep -q '\.tmp$' && { echo "FAIL: a temporary file was left in $run"; fail=1; }

# bad input: 2, one line naming the problem, nothing written
check 2 "missing run dir" "$r1" report "$tmp/none"
grep -q "$tmp/none" "$tmp/out" || { echo "FAIL: missing dir error does not name it"; fail=1; }
[ "$(wc -l <"$tmp/out")" -eq 1 ] || { echo "FAIL: missing dir error is not one line"; fail=1; }
mkdir "$tmp/plain"
check 2 "not a run dir" "$r1" report "$tmp/plain"
check 2 "-o into a missing directory" "$r1" report "$run" -o "$tmp/nodir/out.html"
[ ! -e "$tmp/nodir" ] || { echo "FAIL: -o created $tmp/nodir"; fail=1; }
check 2 "-o names a directory" "$r1" report "$run" -o "$tmp"
cp -r "$run" "$tmp/nometrics"
rm "$tmp/nometrics/metrics.jsonl" "$tmp/nometrics/report.html"
check 2 "run without metrics.jsonl" "$r1" report "$tmp/nometrics"
grep -q "metrics.jsonl" "$tmp/out" || { echo "FAIL: no-metrics error does not name the file"; fail=1; }
[ ! -e "$tmp/nometrics/report.html" ] || { echo "FAIL: report written without metrics"; fail=1; }

# optional: a real browser renders it (chromium is not installed for this test)
if command -v chromium >/dev/null 2>&1; then
  timeout 60 chromium --headless --no-sandbox --disable-gpu --window-size=1400,3000 \
    --screenshot="$tmp/report.png" "file://$tmp/out.html" >/dev/null 2>&1
  [ -s "$tmp/report.png" ] && echo "ok: chromium renders the report" ||
    { echo "FAIL: chromium wrote no screenshot"; fail=1; }
else
  echo "skip: chromium not installed, no render check"
fi
exit $fail
