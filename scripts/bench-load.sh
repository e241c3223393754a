#!/usr/bin/env bash
# Load benchmark of the webhook over keep-alive TLS, end to end (see docs/performance.md):
#   - builds the release binary with the bench-null feature (adds POST /null: same listener,
#     same TLS, same body reading, a fixed tiny 200 instead of the admission);
#   - creates a certificate for localhost, starts the server, times process start -> /readyz 200;
#   - with oha (installed into target/tools if missing), in one run: POST /mutate with a realistic
#     database pod vs POST /null with the same body, at full speed (throughput ratio) and at a
#     fixed rate (p50/p99 latency), sampling the server's RSS from /proc throughout;
#   - prints a Markdown table.
#
# Usage: scripts/bench-load.sh [SECONDS_PER_RUN=10] [CONNECTIONS=32] [RATE=2000]
# Environment: OHA=path/to/oha, VHI_BIN=path/to/binary (built with --features bench-null; skips
# the build, for comparing two builds), VHI_WORKER_THREADS=N (read by serve as --worker-threads; also
# exported as TOKIO_WORKER_THREADS for builds from before that flag), VHI_BENCH_HTTP2=1 (HTTP/2,
# as the API server speaks to webhooks: CONNECTIONS connections, 8 streams each in parallel).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-10}
CONNS=${2:-32}
RATE=${3:-2000}
OHA=${OHA:-target/tools/bin/oha}

if [ ! -x "$OHA" ]; then
  echo "== installing oha into target/tools" >&2
  cargo install oha --locked --root target/tools >&2
fi
if [ -z "${VHI_BIN:-}" ]; then
  echo "== building release binary with --features bench-null" >&2
  cargo build --release --locked --features bench-null --bin velero-hook-injector >&2
  VHI_BIN=target/release/velero-hook-injector
fi

VHI_BENCH_HTTP2=${VHI_BENCH_HTTP2:-}
export VHI_BIN OHA SECS CONNS RATE VHI_BENCH_HTTP2
exec python3 - <<'PY'
import json, os, socket, ssl, statistics, subprocess, sys, tempfile, threading, time, http.client

BIN, OHA = os.environ["VHI_BIN"], os.environ["OHA"]
SECS, CONNS, RATE = int(os.environ["SECS"]), int(os.environ["CONNS"]), int(os.environ["RATE"])
HTTP2 = bool(os.environ.get("VHI_BENCH_HTTP2"))
H2_STREAMS = 8
work = tempfile.mkdtemp(prefix="vhi-bench-")
subprocess.run([BIN, "certs", "--service", "localhost", "--namespace", "bench", "--out", work],
               check=True, stdout=subprocess.DEVNULL)
ca, cert, key = (os.path.join(work, f) for f in ("ca.crt", "tls.crt", "tls.key"))

# The realistic database pod: the captured `kubectl apply` AdmissionReview (2 init containers,
# 2 containers, resources, last-applied annotation) with its main container made PostgreSQL 16
# with a data PVC -- the same pod as benches/support/pods.rs typical_database().
review = json.load(open("tests/fixtures/pod-create-multi-container-init.json"))
spec = review["request"]["object"]["spec"]
spec["containers"][0]["image"] = "postgres:16.4"
spec["containers"][0].setdefault("volumeMounts", []).append(
    {"name": "data", "mountPath": "/var/lib/postgresql/data"})
spec.setdefault("volumes", []).append(
    {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}})
body = os.path.join(work, "review.json")
with open(body, "w") as f:
    json.dump(review, f, separators=(",", ":"))

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

ctx = ssl.create_default_context(cafile=ca)

def start():
    """Starts the server; returns (process, port, seconds from spawn to the first /readyz 200)."""
    port = free_port()
    env = dict(os.environ, RUST_LOG="warn")
    if os.environ.get("VHI_WORKER_THREADS"):
        env["TOKIO_WORKER_THREADS"] = os.environ["VHI_WORKER_THREADS"]
    t0 = time.perf_counter()
    p = subprocess.Popen([BIN, "serve", "--addr", f"127.0.0.1:{port}", "--tls-cert", cert,
                          "--tls-key", key, "--shutdown-delay", "0s"], env=env,
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "a"))
    while True:
        try:
            c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                ready = time.perf_counter() - t0
                c.close()
                return p, port, ready
        except OSError:
            pass
        if time.perf_counter() - t0 > 10:
            p.kill()
            sys.exit("server not ready within 10 s; see " + work + "/server.log")
        time.sleep(0.0005)

def status(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0

def stop(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()

# 1. Time to ready, five cold starts.
readies = []
for _ in range(5):
    p, _, ready = start()
    readies.append(ready * 1000)
    stop(p)

# 2. One server for all load runs.
p, port, _ = start()
idle_rss = status(p.pid, "VmRSS")
threads = len(os.listdir(f"/proc/{p.pid}/task"))
samples = []
sampling = True
def sampler():
    while sampling:
        try:
            samples.append(status(p.pid, "VmRSS"))
        except OSError:
            return
        time.sleep(0.1)
threading.Thread(target=sampler, daemon=True).start()

def oha(path, secs, rate=None):
    cmd = [OHA, "--no-tui", "--output-format", "json", "-z", f"{secs}s", "-c", str(CONNS),
           "-m", "POST", "-T", "application/json", "-D", body, "--cacert", ca]
    if HTTP2:
        cmd += ["--http2", "-p", str(H2_STREAMS)]
    if rate:
        cmd += ["-q", str(rate), "--latency-correction"]
    cmd.append(f"https://localhost:{port}{path}")
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    codes = out.get("statusCodeDistribution", {})
    bad = {k: v for k, v in codes.items() if k != "200"}
    errors = {k: v for k, v in out.get("errorDistribution", {}).items()
              if k != "aborted due to deadline"}
    if bad or errors:
        sys.exit(f"{path}: non-200 answers {bad} errors {errors}")
    return out

oha("/mutate", 2)
oha("/null", 2)
full = {"/null": [], "/mutate": []}
for _ in range(2):
    for path in ("/null", "/mutate"):
        full[path].append(oha(path, SECS)["summary"]["requestsPerSec"])
fixed = {path: oha(path, SECS, RATE) for path in ("/null", "/mutate")}
sampling = False
time.sleep(0.2)
hwm = status(p.pid, "VmHWM")
rss_under_load = max(samples) if samples else 0
anon = status(p.pid, "RssAnon")
stop(p)

def ms(x):
    return f"{x * 1000:.2f} ms"

null_rps = statistics.mean(full["/null"])
mutate_rps = statistics.mean(full["/mutate"])
load = open("/proc/loadavg").read().split()[:3]
print(f"machine: {os.cpu_count()} CPUs; load average at the end {' '.join(load)}; server worker "
      f"threads: {os.environ.get('VHI_WORKER_THREADS', 'default (one per CPU)')}, {threads} threads in all")
protocol = f"HTTP/2, {H2_STREAMS} parallel streams each" if HTTP2 else "HTTP/1.1"
print(f"body: {os.path.getsize(body)} bytes; {CONNS} keep-alive TLS connections ({protocol}); "
      f"{SECS} s per run; oha on the same machine\n")
print("| measure | /mutate | /null | target |")
print("|---|---|---|---|")
print(f"| throughput, full speed (2 runs each, alternated) | "
      f"{' / '.join(f'{r:.0f}' for r in full['/mutate'])} req/s | "
      f"{' / '.join(f'{r:.0f}' for r in full['/null'])} req/s | |")
print(f"| throughput ratio /mutate : /null | **{mutate_rps / null_rps:.2f}** | 1 | >= 0.9 |")
fm, fn = fixed["/mutate"], fixed["/null"]
print(f"| achieved rate at -q {RATE} | {fm['summary']['requestsPerSec']:.0f} req/s | "
      f"{fn['summary']['requestsPerSec']:.0f} req/s | |")
print(f"| p50 latency at {RATE} req/s | {ms(fm['latencyPercentiles']['p50'])} | "
      f"{ms(fn['latencyPercentiles']['p50'])} | |")
print(f"| p99 latency at {RATE} req/s | **{ms(fm['latencyPercentiles']['p99'])}** | "
      f"{ms(fn['latencyPercentiles']['p99'])} | <= 2 ms |")
print(f"| p99.9 latency at {RATE} req/s | {ms(fm['latencyPercentiles']['p99.9'])} | "
      f"{ms(fn['latencyPercentiles']['p99.9'])} | |")
print(f"| server RSS idle after start | {idle_rss / 1024:.1f} MiB | | |")
print(f"| server RSS under load, max of 100 ms samples | {rss_under_load / 1024:.1f} MiB | | |")
# VmHWM is updated lazily by the kernel; the peak is the larger of it and the samples.
print(f"| server peak RSS (max of VmHWM and samples) | **{max(hwm, rss_under_load) / 1024:.1f} MiB** "
      f"| | <= 20 MiB |")
print(f"| server anonymous RSS at the end | {anon / 1024:.1f} MiB | | |")
print(f"| process start -> /readyz 200 (5 cold starts) | min {min(readies):.1f} / median "
      f"{statistics.median(readies):.1f} / max {max(readies):.1f} ms | | <= 100 ms |")
PY
