#!/usr/bin/env bash
# Soak test (not for CI; see docs/reliability.md): the release server under a steady rate of
# admissions for MINUTES, with two certificate rotations (tls.crt/tls.key replaced atomically
# by a new pair) and a template-library hot reload (serve --templates FILE) in the middle.
# Passes when no admission failed, every rotation and the reload took effect, and memory stayed
# flat (RSS sampled every 10 s from /proc).
#
# Usage: scripts/soak.sh [MINUTES=10] [RATE=500]
# Load: oha (installed into target/tools if missing), keep-alive HTTP/1.1 connections at RATE
# req/s, 100 req/s over HTTP/2 (2 connections, 4 streams each: how the API server calls
# webhooks), plus 10 req/s on fresh connections (a TLS handshake each) so rotations meet new
# handshakes.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:-10}
RATE=${2:-500}
OHA=${OHA:-target/tools/bin/oha}
if [ ! -x "$OHA" ]; then
  echo "== installing oha into target/tools" >&2
  cargo install oha --locked --root target/tools >&2
fi
echo "== building release binary" >&2
cargo build --release --locked --bin velero-hook-injector >&2

export VHI_BIN=target/release/velero-hook-injector OHA MINUTES RATE
exec python3 - <<'PY'
import base64, hashlib, json, os, shutil, socket, ssl, subprocess, sys, tempfile, time, http.client

BIN, OHA = os.environ["VHI_BIN"], os.environ["OHA"]
MINUTES, RATE = float(os.environ["MINUTES"]), int(os.environ["RATE"])
DURATION = int(MINUTES * 60)
work = tempfile.mkdtemp(prefix="vhi-soak-")
print(f"work dir {work}", flush=True)

pairs = []
for name in ("a", "b", "c"):
    d = os.path.join(work, name)
    subprocess.run([BIN, "certs", "--service", "localhost", "--namespace", "soak", "--out", d],
                   check=True, stdout=subprocess.DEVNULL)
    pairs.append(d)
bundle = os.path.join(work, "cas.pem")
with open(bundle, "w") as out:
    for d in pairs:
        out.write(open(os.path.join(d, "ca.crt")).read())
serving = os.path.join(work, "serving")
os.makedirs(serving)

def install(pair):
    """Replaces the serving pair atomically (write aside, rename over), as a Secret update does."""
    for f in ("tls.key", "tls.crt"):
        tmp = os.path.join(serving, f + ".new")
        shutil.copyfile(os.path.join(pair, f), tmp)
        os.replace(tmp, os.path.join(serving, f))

install(pairs[0])

TEMPLATE = """name: acme-db
engine: acme
description: In-house database; flushes with its own CLI.
match:
  images: [acme/acme-db]
hooks:
  preBackup:   {{command: [acme-cli, flush, {flag}], onError: Fail, timeout: 2m}}
  postBackup:  {{command: [acme-cli, resume], onError: Continue, timeout: 30s}}
"""
templates = os.path.join(work, "templates.yaml")
def write_templates(flag):
    tmp = templates + ".new"
    open(tmp, "w").write(TEMPLATE.format(flag=flag))
    os.replace(tmp, templates)
write_templates("--wait")

review = json.load(open("tests/fixtures/pod-create-multi-container-init.json"))
spec = review["request"]["object"]["spec"]
spec["containers"][0]["image"] = "postgres:16.4"
spec["containers"][0].setdefault("volumeMounts", []).append(
    {"name": "data", "mountPath": "/var/lib/postgresql/data"})
spec.setdefault("volumes", []).append(
    {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}})
body = os.path.join(work, "review.json")
json.dump(review, open(body, "w"), separators=(",", ":"))
acme = json.loads(json.dumps(review))
acme["request"]["object"]["spec"]["containers"][0]["image"] = "acme/acme-db:2.1"

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
log = open(os.path.join(work, "server.log"), "w")
help_text = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True).stdout
have_templates = "--templates" in help_text
cmd = [BIN, "serve", "--addr", f"127.0.0.1:{port}", "--tls-cert", os.path.join(serving, "tls.crt"),
       "--tls-key", os.path.join(serving, "tls.key"), "--reload-interval", "1s"]
if have_templates:
    cmd += ["--templates", templates]
else:
    print("NOTE: this build has no serve --templates: certificate rotation only", flush=True)
if "--namespace-policy" in help_text:
    cmd += ["--namespace-policy", "off"]
server = subprocess.Popen(cmd, stdout=log, stderr=log, env=dict(os.environ, RUST_LOG="info"))

# The three CAs share one subject name, which OpenSSL's chain building cannot tell apart; the
# checks here compare the served certificate byte for byte instead (oha verifies with rustls).
ctx = ssl._create_unverified_context()
def get(path, data=None):
    c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    if data is None:
        c.request("GET", path)
    else:
        c.request("POST", path, body=json.dumps(data), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = (r.status, r.read(), c.sock.getpeercert(binary_form=True))
    c.close()
    return out

t0 = time.time()
while True:
    try:
        if get("/readyz")[0] == 200:
            break
    except OSError:
        pass
    if time.time() - t0 > 20:
        sys.exit("server not ready")
    time.sleep(0.05)

def der(pair):
    return ssl.PEM_cert_to_DER_cert(open(os.path.join(pair, "tls.crt")).read().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")

def acme_command():
    status, data, _ = get("/mutate", acme)
    resp = json.loads(data)["response"]
    patch = json.loads(base64.b64decode(resp.get("patch", "")) or b"[]")
    for op in patch:
        if op["path"] == "/metadata/annotations":
            return op["value"].get("pre.hook.backup.velero.io/command")
        if op["path"].endswith("pre.hook.backup.velero.io~1command"):
            return op["value"]
    return None

def status(field):
    for line in open(f"/proc/{server.pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0

def oha(rate, conns, extra, name):
    out = open(os.path.join(work, name + ".json"), "w")
    return subprocess.Popen([OHA, "--no-tui", "--output-format", "json", "-z", f"{DURATION}s", "-w",
                             "-c", str(conns), "-q", str(rate), "--latency-correction", "-m", "POST",
                             "-T", "application/json", "-D", body, "--cacert", bundle, *extra,
                             f"https://localhost:{port}/mutate"], stdout=out,
                            stderr=subprocess.DEVNULL), out.name

def run_event(kind, arg, t):
    if kind == "rotate":
        install(pairs[arg])
        time.sleep(3)
        served = get("/healthz")[2]
        ok = served == der(pairs[arg])
        checks.append((f"t={t:.0f}s certificate rotated to pair {arg}: new connections get it", ok))
    elif have_templates:
        before = acme_command()
        write_templates("--fast")
        time.sleep(3)
        after = acme_command()
        ok = before is not None and "--wait" in before and after is not None and "--fast" in after
        checks.append((f"t={t:.0f}s template library reloaded: acme-db pre-hook {before} -> {after}", ok))


steady, steady_out = oha(RATE, 8, [], "steady")
fresh, fresh_out = oha(10, 2, ["--disable-keepalive"], "fresh")
h2, h2_out = oha(100, 2, ["--http2", "-p", "4"], "http2")
start = time.time()
events = [(DURATION / 3, "rotate", 1), (DURATION / 2, "templates", None), (2 * DURATION / 3, "rotate", 2)]
checks = []
samples = []
next_sample = 0.0
print("  t(s)  VmRSS(KiB)  RssAnon(KiB)", flush=True)
while steady.poll() is None or fresh.poll() is None or h2.poll() is None:
    t = time.time() - start
    if t >= next_sample:
        sample = (round(t), status("VmRSS"), status("RssAnon"))
        samples.append(sample)
        print(f"{sample[0]:6d}  {sample[1]:10d}  {sample[2]:12d}", flush=True)
        next_sample += 10
    if events and t >= events[0][0]:
        _, kind, arg = events.pop(0)
        try:
            run_event(kind, arg, t)
        except Exception as e:  # a failed check must not stop the soak
            checks.append((f"t={t:.0f}s {kind}: {e}", False))
        print(f"  event: {checks[-1][0] if checks else kind}: {'ok' if checks and checks[-1][1] else 'skipped'}", flush=True)
    time.sleep(0.5)

samples.append((round(time.time() - start), status("VmRSS"), status("RssAnon")))
hwm = status("VmHWM")
metrics = get("/metrics")[1].decode()
server.terminate()
server.wait(30)

def result(path):
    d = json.load(open(path))
    codes = d.get("statusCodeDistribution", {})
    # oha cuts the requests still in flight when -z runs out; -w waits for them on HTTP/1.1
    # but not on HTTP/2 (there: exactly connections x streams). Not answered, not failed.
    errors = {k: v for k, v in d.get("errorDistribution", {}).items()
              if k != "aborted due to deadline"}
    ok = codes.get("200", 0)
    failed = sum(v for k, v in codes.items() if k != "200") + sum(errors.values())
    return ok, failed, codes, errors, d

s_ok, s_failed, s_codes, s_errors, s = result(steady_out)
f_ok, f_failed, f_codes, f_errors, f = result(fresh_out)
h_ok, h_failed, h_codes, h_errors, h = result(h2_out)
reloads = [l for l in metrics.splitlines() if l.startswith("velero_hook_injector_reloads_total")]
rss = [x[1] for x in samples]
anon = [x[2] for x in samples]
warm = [x for x in samples if x[0] >= 60] or samples
growth = warm[-1][1] - min(x[1] for x in warm)
flat = growth <= 2048
print()
print(f"machine: {os.cpu_count()} CPUs, load average at the end {' '.join(open('/proc/loadavg').read().split()[:3])}")
print("| measure | value |")
print("|---|---|")
print(f"| duration | {DURATION} s |")
print(f"| keep-alive stream ({RATE} req/s target, 8 connections) | {s_ok} answered 200, {s_failed} failed {s_errors or ''}; "
      f"achieved {s['summary']['requestsPerSec']:.0f} req/s, p50 {s['latencyPercentiles']['p50']*1000:.2f} ms, "
      f"p99 {s['latencyPercentiles']['p99']*1000:.2f} ms, slowest {s['summary']['slowest']*1000:.1f} ms |")
print(f"| HTTP/2 stream (100 req/s, 2 connections x 4 streams) | {h_ok} answered 200, {h_failed} failed {h_errors or ''}; "
      f"p99 {h['latencyPercentiles']['p99']*1000:.2f} ms |")
print(f"| fresh-connection stream (10 req/s, a TLS handshake each) | {f_ok} answered 200, {f_failed} failed {f_errors or ''} |")
for name, ok in checks:
    print(f"| {name} | {'yes' if ok else 'NO'} |")
print(f"| reload metrics | {'; '.join(reloads)} |")
print(f"| VmRSS min / max / last (every 10 s) | {min(rss)} / {max(rss)} / {rss[-1]} KiB |")
print(f"| RssAnon min / max / last | {min(anon)} / {max(anon)} / {anon[-1]} KiB |")
print(f"| VmHWM | {hwm} KiB |")
print(f"| VmRSS growth after the first minute (last - min) | {growth} KiB ({'flat' if flat else 'GROWING'}) |")
failed = s_failed + f_failed + h_failed
if failed or not all(ok for _, ok in checks) or not flat:
    print("SOAK FAILED; server log in " + work)
    sys.exit(1)
print("soak passed")
PY
